"""The C++ `sam3` CLI: help, info, and one clear error (exit 1) for each kind of bad input."""
import json
import os
import re
import shutil
import subprocess

import pytest

from conftest import SAMPLE
from test_cli_parity import CLI, cli


def test_help_on_every_command():
    for args in ([], ["segment"], ["info"]):
        r = cli(*args, "--help")
        assert r.returncode == 0 and "--" in r.stdout
    assert "--text" in cli("segment", "--help").stdout


def test_info(tiny_bundle):
    r = cli("info", "--bundle", tiny_bundle)
    assert r.returncode == 0
    assert "tiny" in r.stdout and "grounding_head" in r.stdout


def test_unknown_flag(tmp_path):
    r = cli("segment", "--bundle", "b", "--image", SAMPLE, "--out", str(tmp_path), "--frobnicate")
    assert r.returncode != 0 and "frobnicate" in (r.stderr + r.stdout)


def test_writes_outputs(tiny_bundle, tmp_path):
    r = cli("segment", "--bundle", tiny_bundle, "--image", SAMPLE, "--text", "square",
            "--threshold", "0", "--out", str(tmp_path / "o"), "--verbose")
    assert r.returncode == 0, r.stderr
    res = json.load(open(tmp_path / "o" / "result.json"))
    assert len(res["instances"]) == 20  # threshold 0 keeps every query of the tiny model
    for inst in res["instances"]:
        assert os.path.isfile(tmp_path / "o" / inst["mask_file"])
        assert inst["segmentation"]["size"] == [480, 640]
    assert os.path.isfile(tmp_path / "o" / "overlay.png")
    assert "image_encoder" in r.stderr and "ms" in r.stderr  # --verbose timings


def _bad_bundle(tiny_bundle, tmp_path, edit):
    d = tmp_path / "b"
    shutil.copytree(tiny_bundle, d)
    edit(str(d))
    return str(d)


def _edit_manifest(fn):
    def edit(d):
        path = os.path.join(d, "manifest.json")
        m = json.load(open(path))
        fn(m)
        json.dump(m, open(path, "w"))
    return edit


def _rehash(edit):
    """`edit`, then the manifest's hashes made to match, so the check behind them is reached."""
    def both(d):
        from sam3_tvm.bundle.writer import sha256_file
        edit(d)
        path = os.path.join(d, "manifest.json")
        m = json.load(open(path))
        m["sha256"] = {rel: sha256_file(os.path.join(d, rel)) for rel in m["sha256"]}
        json.dump(m, open(path, "w"))
    return both


def _flip_byte(rel, at):
    def edit(d):
        with open(os.path.join(d, rel), "r+b") as f:
            f.seek(at)
            b = f.read(1)
            f.seek(at)
            f.write(bytes([b[0] ^ 1]))
    return edit


def _truncate(rel, keep):
    def edit(d):
        path = os.path.join(d, rel)
        os.truncate(path, int(os.path.getsize(path) * keep))
    return edit


@pytest.mark.parametrize("edit,message", [
    (lambda d: os.remove(os.path.join(d, "grounding_head.so")), "bundle file missing"),
    # hashes: a flipped byte, a library swapped for another, a cut-short weights file
    (_flip_byte("text_encoder.so", 5000), "text_encoder.so is corrupt or was replaced"),
    (_flip_byte("weights.safetensors", 100000), "weights.safetensors is corrupt or was replaced"),
    (lambda d: shutil.copyfile(os.path.join(d, "memory_encoder.so"), os.path.join(d, "text_encoder.so")),
     "text_encoder.so is corrupt or was replaced"),
    (_truncate("weights.safetensors", 0.5), "weights.safetensors is corrupt or was replaced"),
    (_edit_manifest(lambda m: m["sha256"].pop("image_encoder.so")), "no sha256 recorded for image_encoder.so"),
    # behind matching hashes: the weights file's own checks
    (_rehash(_truncate("weights.safetensors", 0.5)), "inconsistent offsets"),
    (_rehash(lambda d: open(os.path.join(d, "weights.safetensors"), "wb").write(b"garbage!")), "corrupt header"),
    (lambda d: os.remove(os.path.join(d, "weights.safetensors")), "bundle file missing"),
    (lambda d: open(os.path.join(d, "weights.safetensors"), "wb").write(b"garbage!"), "weights"),
    (_edit_manifest(lambda m: m.__setitem__("schema_version", 1)), "schema version 1"),
    (_edit_manifest(lambda m: m["components"]["text_encoder"]["param_shapes"][0].__setitem__(0, 7)),
     "was compiled for"),
    (lambda d: open(os.path.join(d, "text_encoder.so"), "wb").write(b"not a library"), "text_encoder"),
])
def test_bad_bundle(tiny_bundle, tmp_path, edit, message):
    d = _bad_bundle(tiny_bundle, tmp_path, edit)
    r = cli("segment", "--bundle", d, "--image", SAMPLE, "--text", "cat", "--out", str(tmp_path / "o"))
    assert r.returncode == 1 and message in r.stderr, r.stderr


@pytest.mark.parametrize("args,message", [
    (["--text", "   "], "empty text prompt"),
    ([], "give a prompt"),
    (["--box", "10,10,5000,20"], "outside the 640x480 image"),
    (["--text", "cat", "--box", "30,30,10,10"], "empty or outside"),
    (["--point=-3,4"], "outside the 640x480 image"),
    (["--point", "10"], "bad point"),
    (["--box", "1,2,3,x"], "not a number"),
    (["--box", "1,2,3,4,maybe"], "bad box"),
    (["--text", "cat"] + ["--box", "1,1,5,5"] * 5, "at most 4 exemplar boxes"),
    (["--point", "1,1", "--text", "cat"], "at most one box and no text"),
])
def test_bad_prompts(tiny_bundle, tmp_path, args, message):
    r = cli("segment", "--bundle", tiny_bundle, "--image", SAMPLE, "--out", str(tmp_path), *args)
    assert r.returncode == 1 and message in r.stderr, r.stderr


@pytest.mark.parametrize("content,message", [
    (b"\x89PNG\r\n\x1a\n truncated", "bad.png"),
    (b"", "bad.png"),
    (b"hello, not an image", "bad.png"),
])
def test_bad_images(tiny_bundle, tmp_path, content, message):
    bad = tmp_path / "bad.png"
    bad.write_bytes(content)
    r = cli("segment", "--bundle", tiny_bundle, "--image", str(bad), "--text", "cat", "--out", str(tmp_path))
    assert r.returncode == 1 and message in r.stderr and "error" in r.stderr, r.stderr


def test_missing_image(tiny_bundle, tmp_path):
    r = cli("segment", "--bundle", tiny_bundle, "--image", str(tmp_path / "nope.jpg"), "--text", "cat",
            "--out", str(tmp_path))
    assert r.returncode == 1 and "nope.jpg" in r.stderr


@pytest.mark.parametrize("env,expected", [(None, os.cpu_count()), ("1", 1)])
def test_thread_count(tiny_bundle, tmp_path, env, expected):
    """All logical CPUs by default (TVM alone would take half on x86); TVM_NUM_THREADS wins."""
    e = {k: v for k, v in os.environ.items() if k not in ("TVM_NUM_THREADS", "OMP_NUM_THREADS")}
    if env:
        e["TVM_NUM_THREADS"] = env
    r = subprocess.run([CLI, "segment", "--bundle", tiny_bundle, "--image", SAMPLE, "--point", "10,10",
                        "--out", str(tmp_path), "--verbose"], capture_output=True, text=True,
                       timeout=300, env=e)
    assert r.returncode == 0, r.stderr
    assert re.search(rf"threads\s+{expected}\n", r.stderr), r.stderr
