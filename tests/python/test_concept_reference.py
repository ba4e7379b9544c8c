"""The official concept-tracking video model (`Sam3VideoInferenceWithInstanceInteractivity`)
on the CPU, as `sam3_tvm.tools.concept_reference` runs it: the weights are the image
model's, the thresholds are the official ones, and its host logic (spawning, matching,
hotstart removal, reconditioning, the propagation modes) behaves as the official code
says on a tiny synthetic clip, with the shape oracle and end to end from a text prompt."""
import inspect
from collections import Counter

import numpy as np
import pytest

FRAMES = 20


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    from sam3_tvm.tools.synthetic_clip import write_clip

    return write_clip(str(tmp_path_factory.mktemp("concept") / "frames"), frames=FRAMES)


@pytest.fixture(scope="module")
def model():
    from sam3_tvm.tools.concept_reference import build_concept_model

    return build_concept_model("tiny", seed=0)


@pytest.fixture(scope="module")
def thresholds():
    from sam3_tvm.tools.concept_reference import THRESHOLDS

    return THRESHOLDS


def test_weights_and_thresholds(model, thresholds):
    """Every video-model tensor is the image model's (the bundle's weights) under the
    official key mapping, and THRESHOLDS lists every constructor setting of the official
    video classes."""
    import torch
    from sam3.model.sam3_video_base import Sam3VideoBase
    from sam3.model.sam3_video_inference import (Sam3VideoInference,
                                                 Sam3VideoInferenceWithInstanceInteractivity)

    from sam3_tvm.model.builder import build_model

    image = build_model("tiny", seed=0).state_dict()
    video = model.state_dict()
    prefix = "inst_interactive_predictor.model."
    assert len(video) == len(image)
    for k, v in image.items():
        vk = "tracker." + k[len(prefix):] if k.startswith(prefix) else "detector." + k
        assert torch.equal(video[vk], v), vk

    params = set()
    for cls in (Sam3VideoBase, Sam3VideoInference, Sam3VideoInferenceWithInstanceInteractivity):
        params |= set(inspect.signature(cls.__init__).parameters)
    params -= {"self", "kwargs", "detector", "tracker", "image_size", "image_mean", "image_std",
               "compile_model"}
    assert set(thresholds) == params
    assert all(getattr(model, k) == v for k, v in thresholds.items())
    # the values build_sam3_video_model passes (../shared/docs/sam3-video.md §2a)
    assert [thresholds[k] for k in ("new_det_thresh", "hotstart_delay", "hotstart_unmatch_thresh",
                                    "recondition_every_nth_frame")] == [0.7, 15, 8, 16]


def check_hotstart(trace, t):
    """Replays the official hotstart rule (Sam3VideoBase._process_hotstart) over the trace:
    an object is removed on the first frame where, born within `hotstart_delay` frames
    (in the pass's direction), it has been unmatched on >= hotstart_unmatch_thresh frames
    or has shared a detection with an earlier-born track on >= hotstart_dup_thresh frames;
    never otherwise. A concept prompt resets the state."""
    for e in trace:
        if e["phase"] == "add_prompt":
            first, unmatched, pairs, gone = {}, Counter(), Counter(), set()
        f, rev = e["frame"], e["reverse"]
        for o in e["spawned"]:
            first.setdefault(o, f)
        unmatched.update(e["unmatched"])
        for ids in e["det_matches"].values():
            if len(ids) >= 2:
                pick = (max if rev else min)(ids, key=lambda o: first[o])
                pairs.update((pick, o) for o in ids if o != pick)
        diff = f + t["hotstart_delay"] if rev else f - t["hotstart_delay"]

        def young(o):
            return first[o] < diff if rev else first[o] > diff

        expect = {o for o, n in unmatched.items()
                  if o not in gone and n >= t["hotstart_unmatch_thresh"] and young(o)}
        expect |= {o for (_, o), n in pairs.items()
                   if o not in gone and n >= t["hotstart_dup_thresh"] and young(o)}
        assert set(e["removed"]) == expect, (f, rev, e["removed"], expect)
        gone |= expect


def test_shape_oracle(model, clip, thresholds):
    """Default thresholds, the clip's shapes as detections and a tracker that follows them:
    the square is detected throughout, the disc stops being detected after frame 3 (within
    hotstart), the triangle after frame 9 (past it). Then a refinement click, a removal."""
    from sam3_tvm.tools.concept_reference import ConceptSession, shape_oracle
    from sam3_tvm.tools.synthetic_clip import object_boxes

    U, D = thresholds["hotstart_unmatch_thresh"], thresholds["hotstart_delay"]
    N = thresholds["recondition_every_nth_frame"]
    K1, K2 = 3, 9
    assert K1 + U - D < 0 <= K2 + U - D and K1 + U < D - 1  # the premises below
    oracle = shape_oracle(clip, model.tracker.low_res_mask_size, stop_after={1: K1, 2: K2})
    with ConceptSession(model, clip, oracle=oracle, tracker_oracle=oracle.truth) as s:
        s.apply({"op": "add_prompt", "frame": 0, "text": "shapes"})
        s.apply({"op": "propagate", "direction": "forward"})
        run = s.result()

        # spawned on the first frame, ids from 0 in detection order
        first, *fwd = run.trace
        assert (first["phase"], first["frame"], first["spawned"]) == ("add_prompt", 0, [0, 1, 2])
        assert [e["frame"] for e in fwd] == list(range(FRAMES))
        assert not any(e["reverse"] or e["spawned"] for e in fwd)
        check_hotstart(run.trace, thresholds)
        for e in fwd:
            f = e["frame"]
            # the square: matched on every frame, never unmatched or removed
            assert 0 in e["tracked"] and 0 in e["matched"] and 0 not in e["unmatched"]
            # the disc: unmatched once no longer detected, removed after U such frames
            assert (1 in e["matched"]) == (f <= K1)
            assert (1 in e["unmatched"]) == (K1 < f <= K1 + U)
            assert (1 in e["removed"]) == (f == K1 + U)
            assert (1 in e["tracked"]) == (f <= K1 + U)
            # the triangle: unmatched from K2 + 1 on, born too long ago to be removed
            assert (2 in e["unmatched"]) == (f > K2) and 2 in e["tracked"]
            assert e["removed"] in ([], [1])
            # periodic reconditioning from high-confidence matches (tracker logit 10 > 0.8)
            assert e["reconditioned"] == (sorted(e["high_conf_matches"]) if f % N == 0 else [])
        assert fwd[0]["reconditioned"] == [0, 1, 2]

        # outputs: every frame; the disc, removed within the output delay, never shown;
        # out_probs is the detection score at spawn
        assert sorted(run.frames) == list(range(FRAMES))
        for f, objs in run.frames.items():
            assert set(objs) == {0, 2}, f
            assert objs[0]["score"] == pytest.approx(0.95)
            assert objs[2]["score"] == pytest.approx(0.85)
            if f <= 10:  # before the disc covers the square
                want = object_boxes(f, 320, 240)[0]
                assert np.abs(np.array(objs[0]["box"]) - want).max() <= 5, (f, objs[0]["box"], want)
                assert objs[0]["mask"].shape == (240, 320)

        # refinement click on the square: partial propagation (forward and backward), then
        # a removal and two fetches; a clicked object's score is 1.0
        s.apply({"op": "add_prompt", "frame": 5, "obj_id": 0, "points": [[70, 125]], "labels": [1]})
        assert s.final[5][0]["score"] == 1.0
        s.apply({"op": "propagate", "direction": "both"})
        s.apply({"op": "remove_object", "obj_id": 2})
        s.apply({"op": "propagate", "direction": "both"})
        run = s.result()
    assert [p["mode"] for p in run.passes] == ["propagation_full", "propagation_partial",
                                               "propagation_partial", "propagation_fetch",
                                               "propagation_fetch"]
    assert len(run.trace) == 1 + FRAMES  # partial and fetch passes run no host logic
    assert sorted(s.final) == list(range(FRAMES))
    for f, objs in s.final.items():  # as the official predictor returned them
        assert 2 not in objs and 1 not in objs, f
        assert objs[0]["score"] == 1.0


@pytest.mark.parametrize("direction,start",
                         [("forward", 0), ("backward", FRAMES - 1), ("both", 10)])
def test_text_prompt(model, clip, thresholds, direction, start):
    """End to end from a text prompt with the detection thresholds lowered (random
    weights never reach the official ones); the object limit keeps it small."""
    from sam3_tvm.tools.concept_reference import ConceptSession

    limit = 4
    overrides = {"score_threshold_detection": 0.0, "new_det_thresh": 0.0, "max_num_objects": limit}
    with ConceptSession(model, clip, overrides=overrides) as s:
        s.apply({"op": "add_prompt", "frame": start, "text": "a red square"})
        s.apply({"op": "propagate", "direction": direction})
        run = s.result()
        tracked_now = s.tracked_ids()
        if direction == "both":  # a click on a detected object, partial propagation, removal
            oid = tracked_now[0]
            s.apply({"op": "add_prompt", "frame": start, "obj_id": oid, "points": [[160, 120]],
                     "labels": [1]})
            s.apply({"op": "propagate", "direction": "both"})
            partial = dict(s.final)
            s.apply({"op": "remove_object", "obj_id": oid})
            s.apply({"op": "propagate", "direction": "forward"})
            fetched = dict(s.final)
            passes = [p["mode"] for p in s.passes]
    for k, v in overrides.items():  # restored
        assert getattr(model, k) == thresholds[k]

    # detected on the prompted frame: with no tracks every detection is new, the object
    # limit keeps `limit` of them, ids from 0
    first, *rest = run.trace
    assert first["phase"] == "add_prompt" and first["frame"] == start and first["detections"] > 0
    assert first["spawned"] == list(range(min(limit, first["detections"])))
    # the official processing order: forward [start, end], backward [start - 1, 0]
    order = {"forward": [(f, False) for f in range(start, FRAMES)],
             "backward": [(f, True) for f in range(start - 1, -1, -1)]}
    want = order["forward"] + order["backward"] if direction == "both" else order[direction]
    assert [(e["frame"], e["reverse"]) for e in rest] == want
    # tracked afterwards, never more than the limit, removals as hotstart says
    assert rest[0]["tracked"] == first["spawned"]
    assert all(len(e["tracked"]) + len(e["spawned"]) <= limit for e in run.trace)
    check_hotstart(run.trace, thresholds)
    assert sorted(run.frames) == sorted({start} | {f for f, _ in want})
    spawn_scores = [sc for e in run.trace for sc in e["scores"]]
    shown = [o for objs in run.frames.values() for o in objs.values()]
    assert any(o["mask"].any() for o in shown)
    assert all(min(abs(o["score"] - sc) for sc in spawn_scores) < 1e-6 for o in shown)

    if direction == "both":
        assert passes == ["propagation_full", "propagation_full", "propagation_partial",
                          "propagation_partial", "propagation_fetch"]
        assert any(oid in objs and objs[oid]["score"] == 1.0 for objs in partial.values())
        assert not any(oid in objs for objs in fetched.values())
