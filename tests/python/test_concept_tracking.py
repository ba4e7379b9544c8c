"""Concept tracking in C++ (runtime/src/video/concept_tracker.cpp, run through
tests/cpp/video_probe) against the official Sam3VideoInferenceWithInstanceInteractivity on
the CPU (compiler/sam3_tvm/tools/concept_reference.py), on the synthetic clip.

Host-logic parity: both sides get the same oracle detections (the clip's shapes, the
triangle no longer detected after frame 5) and, where said, the same oracle tracker (the
tracker follows the shapes), so ids spawned, matched, unmatched, removed by hotstart,
reconditioned (frame 16) and suppressed are decided from the same inputs; per frame the
same ids and scores, boxes within 1 px and mask IoU >= 0.999.

End to end: `sam3 track --text` on the tiny bundle against the official model, with
lowered thresholds (random weights), and with a confident detector (a synthesised
checkpoint) at the official thresholds; bad input; the box-only prompt fix."""
import json
import os
import subprocess

import numpy as np
import pycocotools.mask as mask_utils
import pytest

from test_concept_steps import PROBE

W, H = 320, 240
FRAMES = 26
TRACE_KEYS = ("tracked", "detections", "spawned", "matched", "det_matches", "unmatched", "empty",
              "removed", "suppressed", "occlusion_suppressed", "reconditioned", "high_conf_matches")


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    from sam3_tvm.tools.synthetic_clip import write_clip

    return write_clip(str(tmp_path_factory.mktemp("clip") / "frames"), FRAMES, W, H)


@pytest.fixture(scope="module")
def concept_model():
    from sam3_tvm.tools.concept_reference import build_concept_model

    return build_concept_model("tiny", seed=0)


def _bits(m):
    return "".join("1" if v > 0 else "0" for v in np.asarray(m).reshape(-1))


def write_oracle(path, oracle, truth, options):
    dets = {}
    for f in range(FRAMES):
        masks, boxes, scores = oracle(f)
        dets[str(f)] = {"masks": [_bits(m) for m in masks], "boxes": np.asarray(boxes).tolist(),
                        "scores": np.asarray(scores).tolist()}
    data = {"options": options, "detections": dets}
    if truth is not None:
        data["truth"] = {str(f): [_bits(m) for m in truth(f)] for f in range(FRAMES)}
    with open(path, "w") as fh:
        json.dump(data, fh)


def run_probe(bundle, clip, actions, oracle_path, tmp_path):
    if not os.path.isfile(PROBE):
        pytest.fail(f"video_probe not built at {PROBE} (make cpp)")
    ap = os.path.join(tmp_path, "actions.json")
    with open(ap, "w") as fh:
        json.dump(actions, fh)
    r = subprocess.run([PROBE, "concept", bundle, clip, ap, oracle_path], capture_output=True, text=True,
                       timeout=1200)
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout)


def check_same(ref, got, loose_masks=0):
    """Per-frame decisions and outputs equal (module docstring). `loose_masks`: how many
    (frame, object) masks may have IoU down to 0.98 instead of 0.999 (objects the random
    tracker follows: see "refine_clicks")."""
    ref_trace = [{k: t[k] for k in TRACE_KEYS} for t in ref.trace]
    got_trace = []
    for t in got["trace"]:
        t = dict(t)
        t["det_matches"] = {int(k): v for k, v in t["det_matches"].items()}
        t["high_conf_matches"] = {int(k): v for k, v in t["high_conf_matches"].items()}
        got_trace.append({k: t[k] for k in TRACE_KEYS})
    assert [(t["frame"], t["reverse"]) for t in got["trace"]] == [(t["frame"], t["reverse"]) for t in ref.trace]
    for r, g, t in zip(ref_trace, got_trace, ref.trace):
        assert g == r, f"frame {t['frame']} (reverse={t['reverse']}): C++ {g} vs official {r}"
    assert sorted(int(f) for f in got["frames"]) == sorted(ref.frames)
    for f, objs in ref.frames.items():
        g = got["frames"][str(f)]
        assert sorted(int(i) for i in g) == sorted(objs), f"frame {f}: ids {sorted(g)} vs {sorted(objs)}"
        for oid, o in objs.items():
            go = g[str(oid)]
            assert go["score"] == pytest.approx(o["score"], abs=1e-6), f"frame {f} object {oid}"
            np.testing.assert_allclose(go["box"], o["box"], atol=1.0)
            m = mask_utils.decode({"size": [H, W], "counts": go["rle"].encode()}).astype(bool)
            ref_m = o["mask"]
            union = (m | ref_m).sum()
            iou = 1.0 if union == 0 else (m & ref_m).sum() / union
            if iou < 0.999 and iou >= 0.98 and loose_masks > 0:
                loose_masks -= 1
                continue
            assert iou >= 0.999, f"frame {f} object {oid}: mask IoU {iou}"


SCENARIOS = {
    # text prompt on frame 0, forward: spawn 3, the triangle unmatched from frame 6 and
    # removed by hotstart on frame 13, reconditioning on frame 16
    "forward_oracle_tracker": dict(
        actions=[{"op": "add_prompt", "frame": 0, "text": "shape"},
                 {"op": "propagate", "direction": "forward"}],
        truth=True),
    # from the middle, both ways (the backward pass starts before the prompt frame), then
    # a second request is a fetch of the cached outputs, then a removal
    "both_oracle_tracker": dict(
        actions=[{"op": "add_prompt", "frame": 12, "text": "shape"},
                 {"op": "propagate", "direction": "both"},
                 {"op": "remove_object", "obj_id": 1},
                 {"op": "propagate", "direction": "forward", "start": 20}],
        truth=True),
    # the real (random-weight) tracker: its tracks match nothing, so every frame spawns
    # objects up to the object limit, and hotstart removes the unmatched ones
    "random_tracker_object_limit": dict(
        actions=[{"op": "add_prompt", "frame": 0, "text": "shape"},
                 {"op": "propagate", "direction": "forward", "max_frames": 11}],
        truth=False, options={"max_num_objects": 7}),
    # text + exemplar box on frame 3 and the other switches: short hotstart, masklet
    # confirmation, suppression of unmatched objects past their hotstart, reconditioning
    # every 5th frame
    "text_box_switches": dict(
        actions=[{"op": "add_prompt", "frame": 3, "text": "shape", "boxes": [[16, 96, 69, 149]]},
                 {"op": "propagate", "direction": "both"}],
        truth=True, options={"hotstart_delay": 4, "hotstart_unmatch_thresh": 2, "hotstart_dup_thresh": 2,
                             "masklet_confirmation_enable": 1, "suppress_unmatched_only_within_hotstart": 0,
                             "init_trk_keep_alive": 3, "max_trk_keep_alive": 3,
                             "recondition_every_nth_frame": 5}),
    # refinement: clicks on a tracked object (its detector conditioning frames within 16
    # frames are cleared) and on a new id, then partial propagations of their states both
    # ways from the clicked frame, then a fetch. The partial propagation is the real
    # (random-weight) tracker, whose logits are flat: about 450 of the 96x96 logits of the
    # new object lie within 1e-3 of 0 on every frame (4e-9 the smallest), so float
    # rounding may flip a pixel and, through hole filling, a few more; one mask may be
    # 0.98 (seen: 1394 vs 1377 pixels on one frame, every other mask equal)
    "refine_clicks": dict(loose_masks=1,
        actions=[{"op": "add_prompt", "frame": 0, "text": "shape"},
                 {"op": "propagate", "direction": "forward"},
                 {"op": "add_points", "frame": 10, "obj_id": 0, "points": [[60, 120], [120, 40]], "labels": [1, 0]},
                 {"op": "add_points", "frame": 10, "obj_id": 9, "points": [[250, 60]], "labels": [1]},
                 {"op": "propagate", "direction": "both", "start": 10},
                 {"op": "propagate", "direction": "forward"}],
        truth=True),
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_host_logic_equals_official(tiny_bundle, clip, concept_model, tmp_path, name):
    from sam3_tvm.tools.concept_reference import run_concept, shape_oracle

    sc = SCENARIOS[name]
    oracle = shape_oracle(clip, mask_size=96, stop_after={2: 5})
    truth = oracle.truth if sc["truth"] else None
    options = sc.get("options", {})
    ref = run_concept(concept_model, clip, sc["actions"], overrides=options, oracle=oracle, tracker_oracle=truth)
    assert any(t["removed"] for t in ref.trace) or name != "forward_oracle_tracker"
    op = os.path.join(tmp_path, "oracle.json")
    write_oracle(op, oracle, truth, options)
    got = run_probe(tiny_bundle, clip, sc["actions"], op, str(tmp_path))
    check_same(ref, got, sc.get("loose_masks", 0))


# End to end: the real detector of the tiny bundle (random weights score about 0.3, so the
# thresholds are lowered identically on both sides), `sam3 track --text` from frame 12
# both ways over the 26 frames. The random tracker matches nothing, so objects spawn up to
# the limit and hotstart removes the unmatched ones. Reconditioning needs a detection
# scoring >= 0.8 (a constant of the official code), which random weights never reach; the
# oracle scenarios above cover it.
E2E_OPTIONS = {"score_threshold_detection": 0.29, "new_det_thresh": 0.29, "max_num_objects": 4}


def test_cli_text_prompt_equals_official(tiny_bundle, clip, concept_model, tmp_path):
    from sam3_tvm.tools.concept_reference import run_concept

    from test_cli_parity import CLI

    actions = [{"op": "add_prompt", "frame": 12, "text": "blue disc"},
               {"op": "propagate", "direction": "both"}]
    ref = run_concept(concept_model, clip, actions, overrides=E2E_OPTIONS)
    assert any(t["removed"] for t in ref.trace) and any(t["spawned"] for t in ref.trace if t["reverse"])
    out = str(tmp_path / "out")
    args = [CLI, "track", "--bundle", tiny_bundle, "--video", clip, "--text", "blue disc", "--start", "12",
            "--out", out]
    for k, v in E2E_OPTIONS.items():
        args += ["--set", f"{k}={v}"]
    r = subprocess.run(args, capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.load(open(os.path.join(out, "result.json")))
    compare_cli(res, ref)
    assert res["annotations"] and res["categories"][0]["name"] == "blue disc"
    assert all(a["noun_phrase"] == "blue disc" for a in res["annotations"])


def compare_cli(res, ref):
    """sam3 track's result.json against the official run: per frame the same objects and
    scores, masks equal (or at most 2 pixels apart), boxes within 1 px."""
    got = {}
    for o in res["objects"]:
        for f, seg in enumerate(o["segmentations"]):
            if seg is not None:
                got.setdefault(f, {})[o["id"]] = (seg, o["bboxes"][f], o["scores"][f])
    for f in range(FRAMES):
        ref_objs = {i: v for i, v in ref.frames.get(f, {}).items() if v["mask"].any()}
        g = got.get(f, {})
        assert sorted(g) == sorted(ref_objs), f"frame {f}: {sorted(g)} vs official {sorted(ref_objs)}"
        for oid, o in ref_objs.items():
            seg, (x, y, bw, bh), score = g[oid]
            assert score == pytest.approx(o["score"], abs=1e-4)
            m = mask_utils.decode({"size": seg["size"], "counts": seg["counts"].encode()}).astype(bool)
            # IoU >= 0.999, or at most 2 pixels apart: random tracker weights leave logits
            # near 0 on a few pixels, where float rounding decides (seen: 5 vs 4 pixels)
            union, inter = (m | o["mask"]).sum(), (m & o["mask"]).sum()
            assert inter / union >= 0.999 or union - inter <= 2, f"frame {f} object {oid}: {inter}/{union}"
            # the CLI's box is of the final mask, the official one of the mask before the
            # object-wise non-overlap step: equal when that step took nothing
            if m.sum() == o["mask"].sum():
                np.testing.assert_allclose([x, y, x + bw, y + bh], o["box"], atol=1.0)


@pytest.mark.parametrize("extra, message", [
    (["--text", ""], "give a text, an exemplar box, or both"),
    (["--text", "   "], "text prompt is blank"),
    (["--text", "disc", "--det-threshold", "1.5"], "score_threshold_detection=1.5: must be in [0, 1]"),
    (["--text", "disc", "--new-det-threshold", "-0.1"], "new_det_thresh=-0.1: must be in [0, 1]"),
    (["--text", "disc", "--set", "hotstart_delay=2.5"], "must be a whole number"),
    (["--text", "disc", "--set", "no_such_option=1"], "unknown concept-tracking option 'no_such_option'"),
    (["--text", "disc", "--set", "hotstart_delay"], "expected NAME=VALUE"),
    (["--text", "disc", "--exemplar", "0,10,10,5,5"], "is empty or outside"),
    (["--text", "disc", "--exemplar", "0,10,10,400,50"], "is empty or outside"),
    (["--text", "disc", "--box", "0,1,1,9,9", "--box", "0,2,2,9,9"], "one exemplar box"),
    (["--text", "disc", "--point", "0,5,5"], "give one or the other"),
    (["--text", "disc", "--start", "99"], "out of range"),
])
def test_cli_concept_bad_input(tiny_bundle, clip, tmp_path, extra, message):
    from test_cli_parity import CLI

    out = tmp_path / "out"
    r = subprocess.run([CLI, "track", "--bundle", tiny_bundle, "--video", clip, "--out", str(out)] + extra,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and message in r.stderr, r.stderr
    assert r.stderr.count("error") == 1, r.stderr
    assert not out.exists() and not any(p.name.startswith("out.partial") for p in tmp_path.iterdir())


def test_box_only_prompt_keeps_its_objects(tiny_bundle, clip, concept_model, tmp_path):
    """A box-only prompt detects on its own frame only (the official "visual" prompt), so
    the official hotstart counts every later frame as unmatched and removes what it found
    8 frames on (upstream #263, #405). The runtime does not count frames where detection
    is not allowed (docs/video.md): the objects stay tracked."""
    from sam3_tvm.tools.concept_reference import run_concept

    from test_cli_parity import CLI

    opts = {"score_threshold_detection": 0.2, "new_det_thresh": 0.2, "max_num_objects": 2}
    box = [16, 96, 69, 149]
    ref = run_concept(concept_model, clip, [{"op": "add_prompt", "frame": 0, "boxes": [box]},
                                            {"op": "propagate", "direction": "forward", "max_frames": 14}],
                      overrides=opts)
    spawned = [i for t in ref.trace for i in t["spawned"]]
    assert spawned and set(spawned) <= {i for t in ref.trace for i in t["removed"]}  # the upstream bug
    out = tmp_path / "out"
    args = [CLI, "track", "--bundle", tiny_bundle, "--video", clip, "--exemplar", "0," + ",".join(map(str, box)),
            "--direction", "forward", "--max-frames", "14", "--out", str(out)]
    for k, v in opts.items():
        args += ["--set", f"{k}={v}"]
    r = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.load(open(out / "result.json"))
    assert sorted(o["id"] for o in res["objects"]) == sorted(spawned)
    assert all(o["segmentations"][14] is not None for o in res["objects"])
    assert res["categories"][0]["name"] == "visual"


# End to end with a confident detector: random weights score about 0.3 and give empty
# masks, so reconditioning (it needs a detection scoring >= 0.8 that overlaps its track,
# IoU >= 0.8) and the official thresholds are never exercised. A checkpoint synthesised in
# the official layout from the seeded tiny model with a few weights changed makes the
# detector confident: the presence head's output bias +6 and the dot-product scoring's
# projection biases 1 (every query scores about 0.99, still varied), the mask embedding's
# last layer x0.1 with bias 1 (every mask covers the frame: NMS keeps one detection per
# frame). The tracker keeps its random weights. With the official thresholds and the
# prompt on frame 16, both ways: the propagation reconditions the object on frame 16, the
# random tracker loses it and hotstart removes it, new objects spawn, forward and backward.
def boost_detector(model):
    import torch

    with torch.no_grad():
        model.transformer.decoder.presence_token_head.layers[2].bias.add_(6.0)
        model.dot_prod_scoring.hs_proj.bias.fill_(1.0)
        model.dot_prod_scoring.prompt_proj.bias.fill_(1.0)
        last = model.segmentation_head.mask_predictor.mask_embed.layers[2]
        last.weight.mul_(0.1)
        last.bias.fill_(1.0)
    return model


@pytest.fixture(scope="module")
def confident(tmp_path_factory):
    from sam3_tvm.bundle.writer import compile_bundle
    from sam3_tvm.model.builder import build_model
    from sam3_tvm.model.checkpoint import synthesize_checkpoint

    d = tmp_path_factory.mktemp("confident")
    ckpt = str(d / "sam3.pt")
    synthesize_checkpoint(boost_detector(build_model("tiny", seed=0)), ckpt)
    compile_bundle("tiny", str(d / "bundle"), checkpoint=ckpt)
    return ckpt, str(d / "bundle")


def test_cli_confident_detector_equals_official(confident, clip, tmp_path):
    from sam3_tvm.tools.concept_reference import build_concept_model, run_concept

    from test_cli_parity import CLI

    ckpt, bundle = confident
    model = build_concept_model("tiny", seed=0, checkpoint=ckpt)
    opts = {"max_num_objects": 3}
    actions = [{"op": "add_prompt", "frame": 16, "text": "blue disc"}, {"op": "propagate", "direction": "both"}]
    ref = run_concept(model, clip, actions, overrides=opts)
    assert any(t["reconditioned"] for t in ref.trace if t["frame"] == 16)
    assert any(t["removed"] for t in ref.trace if t["reverse"]) and any(t["spawned"] for t in ref.trace if t["reverse"])
    assert min(s for t in ref.trace for s in t["scores"]) > 0.8
    out = str(tmp_path / "out")
    r = subprocess.run([CLI, "track", "--bundle", bundle, "--video", clip, "--text", "blue disc", "--start", "16",
                        "--set", "max_num_objects=3", "--out", out], capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, r.stderr[-2000:]
    compare_cli(json.load(open(os.path.join(out, "result.json"))), ref)
