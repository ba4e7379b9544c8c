#!/usr/bin/env bash
# Per-kernel GPU times of the full fp16 bundle (encode, one click, one text prompt) under
# Nsight Compute, on a lent GPU machine; the kit as for gpu_check.sh. Prints the kernels
# that take the most time; the CSV goes to $OUT.
set -u
OUT=${OUT:-/tmp/gpu-out}
KIT=/tmp/kit
mkdir -p "$OUT" "$KIT"
tar -xJf .gpu/kit.tar.xz -C "$KIT" || exit 1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site "$KIT"/whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/compiler
B=$KIT/bundles/full-cuda-fp16
timeout 120 python3 scripts/device/bundle_weights.py apply "$B" "$KIT/full-recipe.json" --accept-new-hash 2>&1 | grep -v -i "warning\|autocast"
printf 'encode\npoint 320,240\ntext a red square\nquit\n' > /tmp/cmds
echo "== $(date +%T) ncu"
LD_LIBRARY_PATH=$KIT/lib timeout 240 ncu --clock-control none --metrics gpu__time_duration.sum --csv \
  --log-file "$OUT/ncu.csv" "$KIT/bin/sam3-bench" --bundle "$B" --image assets/sample.png --device cuda < /tmp/cmds
echo "rc $? $(date +%T)"
python3 - "$OUT/ncu.csv" <<'PY'
import csv, collections, sys
rows = [r for r in csv.reader(open(sys.argv[1])) if len(r) > 10]
head = rows[0]
ki, ni, vi, ui = head.index("ID"), head.index("Kernel Name"), head.index("Metric Value"), head.index("Metric Unit")
scale = {"nsecond": 1e-6, "usecond": 1e-3, "msecond": 1.0, "second": 1e3}
seq = [(int(r[ki]), r[ni], float(r[vi].replace(",", "")) * scale[r[ui]]) for r in rows[1:]]
print(f"{len(seq)} kernel launches, {sum(t for _, _, t in seq):.1f} ms GPU time")
tot, cnt = collections.Counter(), collections.Counter()
for _, n, t in seq:
    tot[n] += t; cnt[n] += 1
for n, t in tot.most_common(40):
    print(f"{t:9.2f} ms {cnt[n]:5d}x  {n[:110]}")
PY
