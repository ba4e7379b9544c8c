#!/usr/bin/env bash
# Print the path of a Python 3.10-3.13 interpreter (3.12 preferred: the tested one).
# pyenv shims answer for versions that are not active, so each candidate is run.
set -u
cands=("${PYTHON:-}" python3.12 python3.13 python3.11 python3.10 python3)
for d in "$HOME"/.pyenv/versions/3.12* "$HOME"/.pyenv/versions/3.13* "$HOME"/.pyenv/versions/3.11* "$HOME"/.pyenv/versions/3.10*; do
  [ -x "$d/bin/python3" ] && cands+=("$d/bin/python3")
done
for c in "${cands[@]}"; do
  [ -n "$c" ] || continue
  if "$c" -c 'import sys, venv; sys.exit(0 if (3,10) <= sys.version_info[:2] <= (3,13) else 1)' >/dev/null 2>&1; then
    "$c" -c 'import sys; print(sys.executable)'
    exit 0
  fi
done
echo "error: no Python 3.10-3.13 with the venv module found; install one (e.g. apt-get install python3 python3-venv)" >&2
exit 1
