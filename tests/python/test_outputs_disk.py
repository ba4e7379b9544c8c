"""Outputs are written atomically (issue 12, item 5): `sam3 segment` and `sam3 track` write
into a staging folder and move it into place at the end, so a full disk (here `ulimit -f`,
a file-size limit: the write fails with EFBIG) gives one clear error and leaves no partial
file, and an earlier result in the output folder stays as it was."""
import os
import shlex
import subprocess

import pytest

from conftest import ROOT
from test_cli_parity import CLI

IMAGE = os.path.join(ROOT, "assets", "sample.png")


def limited(args, kb):
    """Runs the CLI with a file-size limit of `kb` KiB."""
    cmd = f"ulimit -f {kb}; exec " + " ".join(shlex.quote(a) for a in args)
    return subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=600)


def leftovers(parent):
    return [p for p in os.listdir(parent) if ".partial-" in p]


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    from sam3_tvm.tools.synthetic_clip import write_clip

    return write_clip(str(tmp_path_factory.mktemp("clip") / "frames"), 3, 160, 120)


def test_segment_full_disk_leaves_nothing(tiny_bundle, tmp_path):
    out = tmp_path / "out"
    r = limited([CLI, "segment", "--bundle", tiny_bundle, "--image", IMAGE, "--point", "100,100",
                 "--out", str(out)], 4)
    assert r.returncode == 1 and "cannot write" in r.stderr and r.stderr.count("error") == 1, r.stderr
    assert not out.exists() and not leftovers(tmp_path)


def test_segment_full_disk_keeps_the_earlier_result(tiny_bundle, tmp_path):
    out = tmp_path / "out"
    ok = subprocess.run([CLI, "segment", "--bundle", tiny_bundle, "--image", IMAGE, "--point", "100,100",
                         "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert ok.returncode == 0, ok.stderr
    before = {p: (out / p).read_bytes() for p in os.listdir(out)}
    r = limited([CLI, "segment", "--bundle", tiny_bundle, "--image", IMAGE, "--point", "30,40",
                 "--out", str(out)], 4)
    assert r.returncode == 1 and "cannot write" in r.stderr, r.stderr
    assert {p: (out / p).read_bytes() for p in os.listdir(out)} == before and not leftovers(tmp_path)


def test_track_full_disk_leaves_nothing(tiny_bundle, clip, tmp_path):
    out = tmp_path / "out"
    r = limited([CLI, "track", "--bundle", tiny_bundle, "--video", clip, "--box", "0,20,20,80,80",
                 "--overlay", "--out", str(out)], 2)
    assert r.returncode == 1 and "cannot write" in r.stderr and r.stderr.count("error") == 1, r.stderr
    assert not out.exists() and not leftovers(tmp_path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_folder(tiny_bundle, tmp_path):
    parent = tmp_path / "ro"
    parent.mkdir()
    parent.chmod(0o500)
    try:
        r = subprocess.run([CLI, "segment", "--bundle", tiny_bundle, "--image", IMAGE, "--point", "100,100",
                            "--out", str(parent / "out")], capture_output=True, text=True, timeout=600)
        assert r.returncode == 1 and "cannot create" in r.stderr, r.stderr
        assert os.listdir(parent) == []
    finally:
        parent.chmod(0o700)
