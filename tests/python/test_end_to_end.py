"""The bundle pipeline (`sam3-tvm run`) against the official Sam3Processor and
interactive predictor, with the same tiny weights (official complex RoPE kept)."""
import json

import numpy as np
import pytest
import torch

from sam3_tvm.model import build_model
from sam3_tvm.predict import load_image, run

from conftest import SAMPLE


@pytest.fixture(scope="module")
def official():
    from sam3.model.sam3_image_processor import Sam3Processor

    model = build_model("tiny", seed=0)
    proc = Sam3Processor(model, resolution=model.sam3_tvm_config.image_size, device="cpu",
                         confidence_threshold=0.0)
    state = proc.set_image(load_image(SAMPLE))
    return model, proc, state


def test_text_prompt_matches_official(official, tiny_bundle, tmp_path):
    model, proc, state = official
    with torch.no_grad():
        ref = proc.set_text_prompt("a red square", state)
    thr = float(torch.quantile(ref["scores"], 0.6))  # keep ~40% of the queries
    keep = ref["scores"] > thr
    run(tiny_bundle, SAMPLE, str(tmp_path), text="a red square", threshold=thr)
    res = json.load(open(tmp_path / "result.json"))["instances"]
    order = torch.argsort(ref["scores"][keep], descending=True)
    assert len(res) == int(keep.sum()) > 0
    ref_boxes = ref["boxes"][keep][order].numpy()
    ref_scores = ref["scores"][keep][order].numpy()
    ref_masks = ref["masks"][keep][order][:, 0].numpy()
    np.testing.assert_allclose([r["score"] for r in res], ref_scores, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose([r["box"] for r in res], ref_boxes, atol=0.05)
    from PIL import Image
    for r, m in zip(res, ref_masks):
        got = np.asarray(Image.open(tmp_path / r["mask_file"])) > 127
        inter, union = (got & m).sum(), (got | m).sum()
        assert union == 0 or inter / union >= 0.999


def test_point_prompt_matches_official(official, tiny_bundle, tmp_path):
    model, proc, state = official
    pts = np.array([[150.0, 200.0], [450.0, 300.0]])
    labels = np.array([1, 0])
    with torch.no_grad():
        masks, ious, low = model.predict_inst(state, point_coords=pts, point_labels=labels,
                                              multimask_output=True)
    run(tiny_bundle, SAMPLE, str(tmp_path), points=["150,200", "450,300,neg"])
    res = json.load(open(tmp_path / "result.json"))["instances"]
    best = int(np.argmax(ious))
    assert len(res) == 1
    assert res[0]["score"] == pytest.approx(float(ious[best]), abs=1e-5)
    from PIL import Image
    got = np.asarray(Image.open(tmp_path / res[0]["mask_file"])) > 127
    ref = masks[best] > 0.5
    inter, union = (got & ref).sum(), (got | ref).sum()
    assert union == 0 or inter / union >= 0.999
