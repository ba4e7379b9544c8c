"""One sam3::Model used from many threads at once (issue 12): tests/cpp/stress_threads runs
encode, a concept prompt, a click and a box from 4 threads, 8 calls each, then one video
session per thread (a box, 4 frames), and compares every result with the same call made
serially (exact equality). Before the VM pool this crashed (segfault in
StorageObj::AllocTensor) or hung."""
import json
import os
import subprocess

import pytest

from conftest import ROOT
from test_cli_parity import CLI

STRESS = os.path.join(os.path.dirname(CLI), "tests", "cpp", "stress_threads")


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    from sam3_tvm.tools.synthetic_clip import write_clip

    return write_clip(str(tmp_path_factory.mktemp("clip") / "frames"), 5, 160, 120)


@pytest.mark.parametrize("run", range(3))
def test_many_threads_one_model(tiny_bundle, frames, run):
    if not os.path.isfile(STRESS):
        pytest.fail(f"stress_threads not built at {STRESS} (make cpp)")
    r = subprocess.run([STRESS, tiny_bundle, os.path.join(ROOT, "assets", "sample.png"), "4", "8", frames],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    out = json.loads(r.stdout)
    assert out["calls"] == 32 and out["mismatches"] == 0 and out["errors"] == 0
    assert out["video_sessions"] == 4 and out["video_mismatches"] == 0
