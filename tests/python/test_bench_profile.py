"""bench/profile_tvm.py reports every VM call of a component with its time."""
import os
import subprocess
import sys

from conftest import ROOT


def test_profile_lists_kernels(tiny_bundle, tmp_path):
    csv = tmp_path / "p.csv"
    r = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "profile_tvm.py"), "--bundle", tiny_bundle,
                        "--component", "text_encoder", "--top", "5", "--out", str(csv)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("text_encoder:") and len(r.stdout.splitlines()) == 6
    # the instrumented call is a warm one: one uninstrumented call first, by default
    assert "warm-up call 1:" in r.stderr
    lines = csv.read_text().splitlines()
    assert lines[0] == "kernel,calls,total_us" and len(lines) > 10
    assert all(int(line.split(",")[1]) >= 1 for line in lines[1:])
