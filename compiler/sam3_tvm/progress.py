"""Progress output for long steps: one line per step with its duration (stderr)."""

from __future__ import annotations

import contextlib
import sys
import time


@contextlib.contextmanager
def step(what: str):
    t = time.time()
    print(f"[sam3-tvm] {what} ...", file=sys.stderr, flush=True)
    yield
    print(f"[sam3-tvm] {what}: done in {time.time() - t:.1f} s", file=sys.stderr, flush=True)
