"""Progress output for long steps: one line per step with its duration (stderr); for
`compile`, a bar per component while everything else goes to a log file."""

from __future__ import annotations

import contextlib
import os
import sys
import time


@contextlib.contextmanager
def step(what: str):
    t = time.time()
    print(f"[sam3-tvm] {what} ...", file=sys.stderr, flush=True)
    yield
    print(f"[sam3-tvm] {what}: done in {time.time() - t:.1f} s", file=sys.stderr, flush=True)


@contextlib.contextmanager
def output_to_log(log_path: str):
    """Send everything written to stdout and stderr while the block runs, by Python and by
    native code alike (TVM's C++ logging writes to file descriptor 2), to `log_path`; yield
    a text stream on the real stderr for what a person should see. Python's sys.stdout and
    sys.stderr are swapped too: they need not be fds 1 and 2 (pytest, notebooks)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved_out, saved_err = os.dup(1), os.dup(2)
    real = os.fdopen(os.dup(saved_err), "w", buffering=1)
    py_out, py_err = sys.stdout, sys.stderr
    with open(log_path, "a", buffering=1) as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        sys.stdout = sys.stderr = log
        try:
            yield real
        finally:
            sys.stdout, sys.stderr = py_out, py_err
            os.dup2(saved_out, 1)
            os.dup2(saved_err, 2)
            os.close(saved_out)
            os.close(saved_err)
            real.close()


class ComponentProgress:
    """One progress bar per compiled component (stages as its steps) on a terminal; on
    anything else (CI logs, pipes) one line per finished component."""

    STAGES = ("import", "lift weights", "optimise", "build", "export")

    def __init__(self, name: str, stream):
        self.name, self.stream, self.t0 = name, stream, time.time()
        self.bar = None
        if stream.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=len(self.STAGES), desc=self._desc("start"), file=stream, leave=True,
                            bar_format="{desc} {bar:24} {n_fmt}/{total_fmt} {elapsed}")

    def _desc(self, what: str) -> str:
        return f"{self.name:<20} {what:<12}"

    def stage(self, what: str) -> None:
        """`what` (one of STAGES) is starting."""
        if self.bar:
            self.bar.set_description_str(self._desc(what), refresh=False)
            self.bar.n = self.STAGES.index(what)
            self.bar.refresh()

    def done(self) -> float:
        seconds = time.time() - self.t0
        if self.bar:
            self.bar.set_description_str(self._desc("done"), refresh=False)
            self.bar.n = len(self.STAGES)
            self.bar.close()
        else:
            print(f"[sam3-tvm] compiled {self.name} in {seconds:.1f} s", file=self.stream, flush=True)
        return seconds
