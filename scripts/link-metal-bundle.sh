#!/usr/bin/env bash
# Run on a Mac (Apple silicon, Xcode command-line tools): turn the objects that
# `sam3-tvm compile --target metal` writes off macOS into the bundle's .dylib
# libraries. Usage: scripts/link-metal-bundle.sh BUNDLE_DIR
set -euo pipefail
bundle=${1:?usage: $0 BUNDLE_DIR}
[[ "$(uname -s)" == Darwin ]] || { echo "run this on macOS" >&2; exit 1; }
shopt -s nullglob
tars=("$bundle"/*.tar)
[[ ${#tars[@]} -gt 0 ]] || { echo "no component .tar in $bundle" >&2; exit 1; }
for tar in "${tars[@]}"; do
  name=$(basename "$tar" .tar)
  work=$(mktemp -d)
  tar -xf "$tar" -C "$work"
  # as TVM's export_library links on macOS: symbols of libtvm_runtime resolve at load
  clang -dynamiclib -undefined dynamic_lookup -arch arm64 -o "$bundle/$name.dylib" "$work"/*.o
  rm -rf "$work"
  echo "linked $bundle/$name.dylib"
done
# The manifest records each library's SHA-256 (schema 3; the runtime checks it before
# loading): add the hashes of the libraries linked here.
python3 - "$bundle" <<'PY'
import hashlib, json, os, sys
bundle = sys.argv[1]
path = os.path.join(bundle, "manifest.json")
with open(path) as f:
    manifest = json.load(f)
for entry in manifest["components"].values():
    lib = os.path.join(bundle, entry["library"])
    if os.path.isfile(lib):
        with open(lib, "rb") as f:
            manifest["sha256"][entry["library"]] = hashlib.sha256(f.read()).hexdigest()
with open(path + ".tmp", "w") as f:
    json.dump(manifest, f, indent=2)
os.replace(path + ".tmp", path)
PY
