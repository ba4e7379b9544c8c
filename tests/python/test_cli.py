"""User-facing errors: one clear message, non-zero exit."""
import os
import subprocess
import sys

import pytest

from conftest import ROOT, SAMPLE

EXE = os.path.join(os.path.dirname(sys.executable), "sam3-tvm")


def sam3_tvm(*args):
    return subprocess.run([EXE, *args], capture_output=True, text=True, timeout=600)


def test_help():
    r = sam3_tvm("--help")
    assert r.returncode == 0 and "compile" in r.stdout and "verify" in r.stdout


def test_unknown_config():
    r = sam3_tvm("compile", "--config", "huge", "--out", "/tmp/x")
    assert r.returncode == 2 and "invalid choice" in r.stderr


def test_unwritable_output_dir(tmp_path):
    ro = tmp_path / "ro"
    ro.write_text("a file, not a directory")
    r = sam3_tvm("compile", "--config", "tiny", "--out", str(ro / "bundle"))
    assert r.returncode == 1 and "cannot write to output directory" in r.stderr


def test_missing_checkpoint(tmp_path):
    r = sam3_tvm("compile", "--config", "tiny", "--checkpoint", "/no/sam3.pt", "--out", str(tmp_path))
    assert r.returncode == 1 and "checkpoint not found" in r.stderr


@pytest.mark.parametrize("extra,message", [
    (["--text", "  "], "empty text prompt"),
    (["--box", "10,10,5000,20"], "outside the 640x480 image"),
    (["--point=-3,4"], "outside the 640x480 image"),
    (["--box", "1,2,3"], "bad box"),
    ([], "give a prompt"),
])
def test_bad_prompts(tiny_bundle, tmp_path, extra, message):
    r = sam3_tvm("run", "--bundle", tiny_bundle, "--image", SAMPLE, "--out", str(tmp_path), *extra)
    assert r.returncode == 1 and message in r.stderr, r.stderr


def test_corrupt_image(tiny_bundle, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nthis is not a png")
    r = sam3_tvm("run", "--bundle", tiny_bundle, "--image", str(bad), "--text", "cat", "--out", str(tmp_path))
    assert r.returncode == 1 and "cannot decode image" in r.stderr


def test_bundle_missing(tmp_path):
    r = sam3_tvm("verify", "--bundle", str(tmp_path / "nothing"))
    assert r.returncode == 1 and "bundle directory not found" in r.stderr


def test_compile_output_goes_to_the_log(tmp_path):
    """Python prints, warnings and native writes to fds 1 and 2 inside output_to_log land in
    the log; only what is written to the yielded stream reaches the terminal."""
    log = tmp_path / "compile.log"
    code = (
        "import os, sys, warnings\n"
        "from sam3_tvm.progress import output_to_log\n"
        f"with output_to_log({str(log)!r}) as shown:\n"
        "    print('python stdout'); print('python stderr', file=sys.stderr)\n"
        "    warnings.warn('a python warning')\n"
        "    os.write(1, b'native stdout\\n'); os.write(2, b'native stderr\\n')\n"
        "    print('for the user', file=shown)\n"
        "print('after')\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stderr == "for the user\n" and r.stdout == "after\n"
    text = log.read_text()
    for line in ("python stdout", "python stderr", "a python warning", "native stdout", "native stderr"):
        assert line in text


def test_compile_keeps_its_log_in_the_bundle(tiny_bundle):
    """The tiny bundle's compile left TVM's warnings and the step lines in compile.log."""
    text = open(os.path.join(tiny_bundle, "compile.log")).read()
    assert "[sam3-tvm] compile image_encoder" in text and "Warning" in text
