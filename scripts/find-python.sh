#!/usr/bin/env bash
# Print the path of the Python the pinned lock file was made for: 3.12 (tested),
# else 3.13. pyenv shims answer for versions that are not active, so every
# candidate is actually run and its version checked.
set -u
# PYTHON=/path/to/python3.13 picks that one (3.12 or 3.13 only), even where 3.12 exists
if [ -n "${PYTHON:-}" ]; then
  if "$PYTHON" -c "import sys, venv; sys.exit(0 if sys.version_info[:2] in ((3, 12), (3, 13)) else 1)" >/dev/null 2>&1; then
    "$PYTHON" -c 'import sys; print(sys.executable)'
    exit 0
  fi
  echo "error: PYTHON=$PYTHON is not a Python 3.12 or 3.13 with the venv module" >&2
  exit 1
fi
for want in 3.12 3.13; do
  cands=("python$want")
  for d in "$HOME"/.pyenv/versions/"$want"*/bin/python3 /usr/bin/python"$want" /usr/local/bin/python"$want"; do
    [ -x "$d" ] && cands+=("$d")
  done
  for c in "${cands[@]}"; do
    [ -n "$c" ] || continue
    if "$c" -c "import sys, venv; sys.exit(0 if '%d.%d' % sys.version_info[:2] == '$want' else 1)" >/dev/null 2>&1; then
      "$c" -c 'import sys; print(sys.executable)'
      exit 0
    fi
  done
done
echo "error: no Python 3.12 or 3.13 with the venv module found (the pinned requirements need one);" \
     "install one, e.g. apt-get install python3.12-venv, or set PYTHON=/path/to/python3.12" >&2
exit 1
