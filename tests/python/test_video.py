"""`sam3 track` on the tiny bundle against the official tracker run on the CPU with the
same weights (sam3_tvm.tools.video_reference): per frame and object the same
present/absent decision, mask IoU >= 0.999, scores within 1e-4, boxes within 1 px."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import ROOT
from test_cli_parity import cli

# the synthetic clip (scripts/make_video_clip.py): 320x240, 26 frames; the red square
# starts near (16..70, 96..150) and moves right, the blue disc moves left and passes in
# front of it around frames 11-15
BOX0 = [16, 96, 70, 150]
DISC0 = [272, 132]


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    d = tmp_path_factory.mktemp("clip")
    subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "make_video_clip.py"), str(d / "frames"),
                    "--video", str(d / "clip.mkv")], check=True)
    mask = np.zeros((240, 320), np.uint8)
    mask[100:150, 140:200] = 255
    Image.fromarray(mask).save(d / "mask5.png")
    return d


@pytest.fixture(scope="module")
def reference_model():
    from sam3_tvm.model import build_model

    return build_model("tiny", seed=0)  # the bundle's weights; official complex RoPE


def track(bundle, clip, out, *args, video=None):
    r = cli("track", "--bundle", bundle, "--video", str(video or clip / "frames"), "--out", str(out), *args)
    assert r.returncode == 0, r.stderr
    return json.load(open(out / "result.json"))


def official(model, clip, actions):
    from sam3_tvm.tools.video_reference import run_actions

    return run_actions(model, str(clip / "frames"), actions)


def check(res, ref, min_frames):
    """Every frame and object of the reference against result.json (video_parity.compare:
    same present/absent, IoU >= 0.999, scores within 1e-4, boxes within 1 px)."""
    from sam3_tvm.tools.video_parity import compare

    assert res["video"]["num_frames"] == 26 and res["video"]["width"] == 320
    assert len(ref) >= min_frames
    summary = compare(res, ref)
    assert summary["passed"], summary["problems"][:10]
    return sum(r["objects"] for r in summary["rows"])


@pytest.mark.parametrize("direction,start", [("forward", None), ("backward", 25), ("both", 12)])
def test_box_and_clicks(tiny_bundle, clip, reference_model, tmp_path, direction, start):
    """A box for the square and a positive + negative click for the disc, on one frame."""
    f = start or 0
    args = ["--box", f"{f},{','.join(map(str, BOX0))}", "--point", f"{f},{DISC0[0]},{DISC0[1]},id=2",
            "--point", f"{f},250,60,neg,id=2", "--direction", direction]
    res = track(tiny_bundle, clip, tmp_path / "o", *args)
    ref = official(reference_model, clip, [
        {"op": "add_points", "frame": f, "obj_id": 1, "box": BOX0},
        {"op": "add_points", "frame": f, "obj_id": 2, "points": [DISC0, [250, 60]], "labels": [1, 0]},
        {"op": "propagate", "direction": direction}])
    assert check(res, ref, 13) > 20
    # one palette PNG per frame, pixel = object id
    m = np.asarray(Image.open(tmp_path / "o" / "masks" / f"{f:05d}.png"))
    assert m.shape == (240, 320) and set(np.unique(m)) <= {0, 1, 2}


def test_mask_prompt_and_max_frames(tiny_bundle, clip, reference_model, tmp_path):
    res = track(tiny_bundle, clip, tmp_path / "o", "--mask", f"5,{clip / 'mask5.png'},id=3",
                "--direction", "both", "--max-frames", "6", "--overlay")
    ref = official(reference_model, clip, [
        {"op": "add_mask", "frame": 5, "obj_id": 3, "mask": str(clip / "mask5.png")},
        {"op": "propagate", "direction": "both", "max_frames": 6}])
    assert sorted(ref) == list(range(0, 12))  # 5..11 forward, 5..0 backward
    check(res, ref, 12)
    assert len(os.listdir(tmp_path / "o" / "overlay")) == 26


def test_refinement_click_and_removed_object(tiny_bundle, clip, reference_model, tmp_path):
    """Objects prompted on different frames, a removal, a refinement click mid-video on a
    tracked frame, and a second propagation from another start."""
    actions = [
        {"op": "add_points", "frame": 12, "obj_id": 1, "box": [120, 100, 176, 158]},
        {"op": "add_points", "frame": 12, "obj_id": 2, "points": [[185, 132]], "labels": [1]},
        {"op": "add_mask", "frame": 5, "obj_id": 3, "mask": str(clip / "mask5.png")},
        {"op": "propagate", "direction": "both"},
        {"op": "remove_object", "obj_id": 2},
        {"op": "add_points", "frame": 20, "obj_id": 1, "points": [[200, 140], [60, 60]], "labels": [1, 0]},
        {"op": "propagate", "direction": "both", "start": 18},
    ]
    path = tmp_path / "actions.json"
    path.write_text(json.dumps(actions))
    res = track(tiny_bundle, clip, tmp_path / "o", "--actions", str(path))
    ref = official(reference_model, clip, actions)
    assert {o["id"] for o in res["objects"]} == {1, 3}
    assert check(res, ref, 26) > 40


def test_video_file_equals_frame_folder(tiny_bundle, clip, tmp_path):
    args = ["--box", f"3,{','.join(map(str, BOX0))}", "--direction", "both", "--max-frames", "4"]
    a = track(tiny_bundle, clip, tmp_path / "a", *args)
    b = track(tiny_bundle, clip, tmp_path / "b", *args, video=clip / "clip.mkv")
    assert a["objects"] == b["objects"]


# --- bad input: one clear error, exit != 0, nothing written -----------------------------

def bad(tiny_bundle, clip, tmp_path, *args, video=None, expect):
    out = tmp_path / "out"
    r = cli("track", "--bundle", tiny_bundle, "--video", str(video or clip / "frames"), "--out", str(out), *args)
    assert r.returncode != 0
    assert expect in r.stderr, r.stderr
    assert r.stderr.count("error") == 1 and "Traceback" not in r.stderr
    assert not out.exists() and not [p for p in os.listdir(tmp_path) if ".partial" in p]


def test_bad_inputs(tiny_bundle, clip, tmp_path):
    box = f"0,{','.join(map(str, BOX0))}"
    (tmp_path / "empty").mkdir()
    bad(tiny_bundle, clip, tmp_path, "--box", box, video=tmp_path / "empty", expect="no PNG/JPEG frames")
    (tmp_path / "notvideo.mp4").write_text("hello")
    bad(tiny_bundle, clip, tmp_path, "--box", box, video=tmp_path / "notvideo.mp4", expect="notvideo.mp4")
    bad(tiny_bundle, clip, tmp_path, "--box", box, video=tmp_path / "missing.mkv", expect="missing.mkv")
    bad(tiny_bundle, clip, tmp_path, "--box", "26,1,1,5,5", expect="frame 26 is out of range")
    bad(tiny_bundle, clip, tmp_path, "--point", "0,400,10", expect="outside the 320x240 frame")
    bad(tiny_bundle, clip, tmp_path, "--box", box, "--start", "40", expect="frame 40 is out of range")
    small = tmp_path / "small.png"
    Image.fromarray(np.full((10, 10), 255, np.uint8)).save(small)
    bad(tiny_bundle, clip, tmp_path, "--mask", f"0,{small}", expect="the video frames are 320x240")
    bad(tiny_bundle, clip, tmp_path, "--direction", "sideways", "--box", box, expect="bad direction")
    bad(tiny_bundle, clip, tmp_path, expect="give a prompt")
    actions = tmp_path / "a.json"
    actions.write_text(json.dumps([{"op": "add_points", "frame": 0, "obj_id": 1, "box": BOX0},
                                   {"op": "add_points", "frame": 0, "obj_id": 2, "points": [DISC0]},
                                   {"op": "remove_object", "obj_id": 2},
                                   {"op": "add_points", "frame": 3, "obj_id": 2, "points": [DISC0]}]))
    bad(tiny_bundle, clip, tmp_path, "--actions", str(actions), expect="object 2 was removed")
    actions.write_text("[{\"op\": \"propagate\"}]")
    bad(tiny_bundle, clip, tmp_path, "--actions", str(actions), expect="nothing to track")


def test_memory_stays_bounded(tiny_bundle, tmp_path):
    """Peak RSS of a 300-frame clip within 10% of a 30-frame one (same looping content,
    one object, forward): the session keeps only what the memory selection can use."""
    peaks = {}
    for n in (30, 300):
        frames = tmp_path / f"clip{n}"
        subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "make_video_clip.py"), str(frames),
                        "--frames", str(n), "--loop", "26"], check=True)
        from test_cli_parity import CLI

        r = subprocess.run(["/usr/bin/time", "-f", "maxrss %M", CLI, "track", "--bundle", tiny_bundle,
                            "--video", str(frames), "--box", f"0,{','.join(map(str, BOX0))}",
                            "--direction", "forward", "--out", str(tmp_path / f"o{n}")],
                           capture_output=True, text=True, timeout=900)
        assert r.returncode == 0, r.stderr
        peaks[n] = int(r.stderr.split("maxrss")[-1])
        res = json.load(open(tmp_path / f"o{n}" / "result.json"))
        assert len(res["objects"][0]["segmentations"]) == n
    assert peaks[300] <= 1.10 * peaks[30], peaks
