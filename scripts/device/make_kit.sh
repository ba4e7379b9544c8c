#!/usr/bin/env bash
# Pack what a lent GPU machine needs to run the C++ CLI on CUDA bundles into
# .gpu/kit.tar.xz (scripts/device/gpu_check.sh unpacks it there). That machine has
# CUDA, PyTorch and Python 3.12 but no TVM, none of our Debian libraries, no registry,
# and takes at most 64 MiB per call, so the kit holds:
#   bin/   sam3, sam3-bench (built here)
#   lib/   libsam3, the TVM runtime (+ CUDA part, libcudart) and the Debian libraries they
#          load, except FFmpeg: its four libraries are stubs that abort if called (video
#          decoding is not part of the GPU check; the image path never calls them)
#   bundles/ tiny CUDA bundles whole; full CUDA bundles without weights.safetensors
#   full-recipe.json (+ .values.safetensors): scripts/device/bundle_weights.py rebuilds
#          the full weights from the seed there
#   whl/   the official sam3 package and the pure-Python needs the machine lacks
# Usage: scripts/device/make_kit.sh   (after `make cpp` and compiling bundles/{tiny,full}-cuda-{fp32,fp16})
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
mkdir -p "$STAGE"/{bin,lib,bundles,whl} .gpu

cp build/sam3 build/sam3-bench "$STAGE/bin/"
TVM=$(.venv/bin/python -c "import os, tvm; print(os.path.dirname(tvm.__file__))")
FFI=$(.venv/bin/python -c "import os, tvm_ffi; print(os.path.dirname(tvm_ffi.__file__))")
cp "$TVM/lib/libtvm_runtime.so" "$TVM/lib/libtvm_runtime_cuda.so" "$FFI/lib/libtvm_ffi.so" "$STAGE/lib/"
cp -L "${CUDA_HOME:-/usr/local/cuda}/lib64/libcudart.so.13" "$STAGE/lib/"

# the shared libraries sam3 loads, minus glibc/libstdc++ (the machine's are newer) and FFmpeg
FFMPEG='libavformat.so.59|libavcodec.so.59|libavutil.so.57|libswscale.so.6'
SYSTEM='^(libc|libm|libpthread|libdl|librt|libgcc_s|libstdc\+\+|ld-linux-x86-64)\.so'
direct=$(readelf -d build/sam3 build/runtime/libsam3.so.0 | awk '/NEEDED/{gsub(/[\[\]]/,"",$5); print $5}' \
  | sort -u | grep -v -E "$SYSTEM|$FFMPEG|libsam3|libtvm")
resolved=$(ldd build/sam3)
for lib in $direct; do
  path=$(awk -v l="$lib" '$1==l {print $3}' <<<"$resolved")
  echo "$path"
  ldd "$path" | awk '/=>/{print $3}'
done | sort -u | while read -r p; do
  [[ $(basename "$p") =~ $SYSTEM ]] || cp -L "$p" "$STAGE/lib/"
done
cp -L build/runtime/libsam3.so.0 "$STAGE/lib/"

# FFmpeg stubs: the symbols libsam3 imports, under their version nodes
objdump -T build/runtime/libsam3.so.0 | awk '/\((LIBAV|LIBSW)/{v=$(NF-1); gsub(/[()]/,"",v); print v, $NF}' | sort -u > "$STAGE/syms"
python3 - "$STAGE" <<'EOF'
import collections, subprocess, sys
stage = sys.argv[1]
sonames = {"LIBAVCODEC_59": "libavcodec.so.59", "LIBAVFORMAT_59": "libavformat.so.59",
           "LIBAVUTIL_57": "libavutil.so.57", "LIBSWSCALE_6": "libswscale.so.6"}
by = collections.defaultdict(list)
for line in open(f"{stage}/syms"):
    v, s = line.split()
    by[v].append(s)
for v, syms in by.items():
    so = sonames[v]
    src = ['#include <stdio.h>', '#include <stdlib.h>',
           'static void none(const char* f) { fprintf(stderr, "sam3 GPU kit: %s called, but the kit '
           'has no FFmpeg (no video decoding)\\n", f); abort(); }']
    src += [f'void* {s}(void) {{ none("{s}"); return 0; }}' for s in syms]
    open(f"{stage}/{so}.c", "w").write("\n".join(src) + "\n")
    open(f"{stage}/{so}.map", "w").write(v + " { global: " + " ".join(s + ";" for s in syms) + " local: *; };\n")
    subprocess.run(["gcc", "-shared", "-fPIC", "-O1", "-o", f"{stage}/lib/{so}", f"{stage}/{so}.c",
                    f"-Wl,--version-script={stage}/{so}.map", f"-Wl,-soname,{so}"], check=True)
EOF

for b in tiny-cuda-fp32 tiny-cuda-fp16; do cp -r "bundles/$b" "$STAGE/bundles/"; done
for b in full-cuda-fp32 full-cuda-fp16; do
  mkdir "$STAGE/bundles/$b"
  (cd "bundles/$b" && cp manifest.json bpe_simple_vocab_16e6.txt.gz *.so "$STAGE/bundles/$b/")
done
rm -f "$STAGE"/bundles/*/compile.log
[ -f .gpu/full-recipe.json ] || .venv/bin/python scripts/device/bundle_weights.py recipe bundles/full-cuda-fp32 .gpu/full-recipe.json
cp .gpu/full-recipe.json .gpu/full-recipe.values.safetensors "$STAGE/"

# the official package and what it imports that the machine's image lacks (KINDS.md)
for p in sam3 ftfy wcwidth pycocotools; do
  v=$(grep -i "^$p==" compiler/requirements.lock | sed 's/ .*//')
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$STAGE/whl" "$v"
done
python3 -m pip wheel -q --no-deps -w "$STAGE/whl" "$(grep -i '^iopath==' compiler/requirements.lock | sed 's/ .*//')"

rm -f "$STAGE"/syms "$STAGE"/*.c "$STAGE"/*.map
tar -C "$STAGE" -cf - . | xz -T2 -9 > .gpu/kit.tar.xz
ls -la .gpu/kit.tar.xz
