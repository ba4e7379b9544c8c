#!/usr/bin/env bash
# One call on a lent GPU machine (docs/gpu.md, "Runs on a lent H200"): unpack the kit that
# scripts/device/make_kit.sh made (.gpu/kit.tar.xz: the CLI, sam3-bench, their shared
# libraries, CUDA bundles without the full weights, weight recipes, Python wheels), rebuild
# the full weights from the seed, then bench/gpu_check.py on the tiny and the full bundles.
# Everything it measures lands in $OUT (gpu_check-*.json, logs).
# Shorter calls: TINY_TIMEOUT, WEIGHTS_TIMEOUT, FULL_TIMEOUT (seconds), RUNS, BUDGET (timed seconds).
set -u
OUT=${OUT:-/tmp/gpu-out}
KIT=/tmp/kit
WORK=/tmp/gpu-work  # result folders with mask PNGs: only the JSON and logs go to $OUT
mkdir -p "$OUT" "$KIT" "$WORK"
step() { echo "== $(date +%T) $*"; }

step unpack
tar -xJf .gpu/kit.tar.xz -C "$KIT" || exit 1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site "$KIT"/whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/compiler
# the C++ programs get the kit's libraries; Python keeps the machine's own
for exe in sam3 sam3-bench; do
  printf '#!/bin/sh\nLD_LIBRARY_PATH=%s/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} exec %s/bin/%s "$@"\n' \
    "$KIT" "$KIT" "$exe" > "$KIT/$exe"
  chmod +x "$KIT/$exe"
done
grep -m1 "model name" /proc/cpuinfo; nproc
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
"$KIT/sam3" info --bundle "$KIT/bundles/tiny-cuda-fp32" || exit 1

CHECK="python3 bench/gpu_check.py --cli $KIT/sam3 --bench-exe $KIT/sam3-bench"
step tiny
timeout ${TINY_TIMEOUT:-120} $CHECK --out "$WORK/tiny" --skip-timing "$KIT/bundles/tiny-cuda-fp32" "$KIT/bundles/tiny-cuda-fp16" \
  > "$OUT/tiny.log" 2>&1
echo "rc $?"; grep -v -i "warning\|autocast" "$OUT/tiny.log" | tail -40

step full weights
timeout ${WEIGHTS_TIMEOUT:-150} python3 scripts/device/bundle_weights.py apply "$KIT/bundles/full-cuda-fp32" "$KIT/full-recipe.json" \
  --accept-new-hash 2>&1 | grep -v -i "warning\|autocast"
# both full bundles take the same fp32 weights: share the file and its hash
ln -f "$KIT/bundles/full-cuda-fp32/weights.safetensors" "$KIT/bundles/full-cuda-fp16/weights.safetensors"
python3 - "$KIT/bundles" <<'EOF'
import json, sys
a = json.load(open(f"{sys.argv[1]}/full-cuda-fp32/manifest.json"))
p = f"{sys.argv[1]}/full-cuda-fp16/manifest.json"
b = json.load(open(p))
b["sha256"]["weights.safetensors"] = a["sha256"]["weights.safetensors"]
json.dump(b, open(p, "w"), indent=2)
EOF

step full
timeout ${FULL_TIMEOUT:-280} $CHECK --out "$WORK/full" --runs ${RUNS:-5} --bench-budget ${BUDGET:-60} \
  "$KIT/bundles/full-cuda-fp32" "$KIT/bundles/full-cuda-fp16" > "$OUT/full.log" 2>&1
echo "rc $?"; grep -v -i "warning\|autocast" "$OUT/full.log" | tail -60
cp "$WORK"/tiny/gpu_check.json "$OUT/gpu_check-tiny.json" 2>/dev/null
cp "$WORK"/full/gpu_check.json "$OUT/gpu_check-full.json" 2>/dev/null
step done
