#!/usr/bin/env bash
# ctest: install the build tree to a temp prefix, build the consumer against it, run it.
set -euo pipefail
build=$1; src=$(cd "$(dirname "$0")" && pwd); tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" > /dev/null
cmake -S "$src" -B "$tmp/build" -DCMAKE_PREFIX_PATH="$tmp/prefix" > /dev/null
cmake --build "$tmp/build" > /dev/null
out=$("$tmp/build/consumer" /nonexistent/bundle)
echo "$out"
[[ "$out" == *"bundle directory not found: /nonexistent/bundle"* ]]
