"""Concept tracking's C++ steps, one at a time, against the official code on the tiny
bundle (tests/cpp/video_probe.cpp runs a step; tools/concept_reference.py the official
model): the detector step (grounding head, the video detector's joint scores, mask NMS,
the score threshold) on one frame, with a text prompt and with text + exemplar box."""
import json
import os
import subprocess

import numpy as np
import pytest

from conftest import ROOT
from test_cli_parity import CLI

PROBE = os.path.join(os.path.dirname(CLI), "tests", "cpp", "video_probe")


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    from sam3_tvm.tools.synthetic_clip import write_clip

    return write_clip(str(tmp_path_factory.mktemp("clip") / "frames"), 3, 320, 240)


@pytest.fixture(scope="module")
def concept_model():
    from sam3_tvm.tools.concept_reference import build_concept_model

    return build_concept_model("tiny", seed=0)


def official_detections(model, clip, text, box_xyxy=None, score=0.0, nms=0.1):
    """det_out of the official run_backbone_and_detection on frame 0, from add_prompt."""
    from sam3.model.sam3_video_base import Sam3VideoBase

    from sam3_tvm.tools.concept_reference import ConceptSession

    seen = {}
    original = Sam3VideoBase.run_backbone_and_detection

    def capture(self, *a, **k):
        out = original(self, *a, **k)
        seen.setdefault(k["frame_idx"], out)
        return out

    Sam3VideoBase.run_backbone_and_detection = capture
    try:
        with ConceptSession(model, clip, overrides={"score_threshold_detection": score,
                                                    "det_nms_thresh": nms}) as s:
            action = {"op": "add_prompt", "frame": 0, "text": text}
            if box_xyxy is not None:
                action.update(boxes=[box_xyxy], box_labels=[1])
            s.apply(action)
    finally:
        Sam3VideoBase.run_backbone_and_detection = original
    d = seen[0]
    return {"scores": d["scores"].numpy(), "boxes": d["bbox"].numpy(), "masks": d["mask"].numpy()}


def probe_detections(bundle, frame_png, text, box_cxcywh=None, score=0.0, nms=0.1):
    if not os.path.isfile(PROBE):
        pytest.fail(f"video_probe not built at {PROBE} (make cpp)")
    args = [PROBE, "detect", bundle, frame_png, text]
    if box_cxcywh is not None:
        args += [str(v) for v in box_cxcywh] + ["1"]
    args += [str(score), str(nms)]
    r = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    return {"scores": np.array(d["scores"], np.float32), "boxes": np.array(d["boxes_xyxy"], np.float32),
            "masks": np.array(d["masks"], np.float32)}


@pytest.mark.parametrize("with_box", [False, True])
def test_detector_step_equals_official(tiny_bundle, clip, concept_model, with_box):
    box = [16, 96, 69, 149]  # the square on frame 0, pixels
    w, h = 320, 240
    cxcywh = [(box[0] + box[2]) / 2 / w, (box[1] + box[3]) / 2 / h, (box[2] - box[0]) / w, (box[3] - box[1]) / h]
    for score in (0.0, 0.27):  # everything, and about half of the random queries
        ref = official_detections(concept_model, clip, "a red square", box if with_box else None, score)
        got = probe_detections(tiny_bundle, os.path.join(clip, "0.png"), "a red square",
                               cxcywh if with_box else None, score)
        assert len(got["scores"]) == len(ref["scores"]) > 0
        np.testing.assert_allclose(got["scores"], ref["scores"], atol=2e-5)
        np.testing.assert_allclose(got["boxes"], ref["boxes"], atol=2e-5)
        np.testing.assert_allclose(got["masks"].reshape(ref["masks"].shape), ref["masks"],
                                   atol=1e-4 * max(1.0, float(np.abs(ref["masks"]).max())))
