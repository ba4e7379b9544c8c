"""The runtime's input limits (sam3/limits.h, docs/reliability.md): each one exceeded is
one clear error and a non-zero exit with nothing written; each one reached still works.
The CLI reaches the text, point and frame limits; tests/cpp/api_limits checks the rest
through the C++ API."""
import json
import os
import subprocess

import numpy as np
import pytest
from PIL import Image

from conftest import ROOT
from test_cli_parity import CLI, cli

SAMPLE = os.path.join(ROOT, "assets", "sample.png")
LIMITS = os.path.join(os.path.dirname(CLI), "tests", "cpp", "api_limits")
MAX_TEXT, MAX_FRAMES, MAX_POINTS = 4096, 100000, 256


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    d = tmp_path_factory.mktemp("frames")
    for i in range(3):
        Image.fromarray(np.full((60, 80, 3), 40 * i, np.uint8)).save(d / f"{i}.png")
    return d


def refused(r, expect, out):
    assert r.returncode == 1, r.stderr
    assert expect in r.stderr and r.stderr.count("error") == 1, r.stderr
    assert not os.path.exists(out)


def test_text_prompt_length(tiny_bundle, frames, tmp_path):
    ok = cli("segment", "--bundle", tiny_bundle, "--image", SAMPLE, "--text", "a" * MAX_TEXT,
             "--out", str(tmp_path / "ok"))
    assert ok.returncode == 0, ok.stderr
    out = tmp_path / "o"
    refused(cli("segment", "--bundle", tiny_bundle, "--image", SAMPLE, "--text", "a" * (MAX_TEXT + 1),
                "--out", str(out)), "the limit is 4096", out)
    refused(cli("track", "--bundle", tiny_bundle, "--video", str(frames), "--text", "b" * (MAX_TEXT + 1),
                "--out", str(out)), "the limit is 4096", out)


def test_points_per_call(tiny_bundle, frames, tmp_path):
    actions = tmp_path / "a.json"
    actions.write_text(json.dumps([{"op": "add_points", "frame": 0, "obj_id": 1,
                                    "points": [[10, 10]] * (MAX_POINTS + 1)}]))
    out = tmp_path / "o"
    refused(cli("track", "--bundle", tiny_bundle, "--video", str(frames), "--actions", str(actions),
                "--out", str(out)), "at most 256 points per call", out)


def test_video_file_frame_count(tiny_bundle, tmp_path):
    """A 100001-frame video file (16x16 MPEG-4, made here in ~2 s) is refused when opened."""
    video = tmp_path / "many.avi"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-f", "lavfi", "-i", "color=c=black:s=16x16:r=1000",
                    "-frames:v", str(MAX_FRAMES + 1), "-c:v", "mpeg4", "-g", "100000", "-bf", "0", str(video)],
                   check=True, timeout=300)
    out = tmp_path / "o"
    refused(cli("track", "--bundle", tiny_bundle, "--video", str(video), "--box", "0,1,1,8,8",
                "--out", str(out)), "has more than 100000 frames (the limit)", out)


def test_api_limits(tiny_bundle, tmp_path):
    if not os.path.isfile(LIMITS):
        pytest.fail(f"api_limits not built at {LIMITS} (make cpp)")
    # 16x12 frames: every click re-makes all objects' non-overlapping masks on its frame, so
    # reaching 1000 objects costs objects^2 x pixels
    for i in range(2):
        Image.fromarray(np.full((12, 16, 3), 90 * i, np.uint8)).save(tmp_path / f"{i}.png")
    r = subprocess.run([LIMITS, tiny_bundle, SAMPLE, str(tmp_path)], capture_output=True, text=True, timeout=900)
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert r.returncode == 0 and len(rows) == 8 and all(x["ok"] for x in rows), r.stdout + r.stderr
