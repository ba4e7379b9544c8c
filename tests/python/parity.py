"""Shared checks: a written result directory against the official PyTorch outputs
(used for both the Python bundle pipeline and the C++ CLI)."""
import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

# The official references every parity test compares with.
TEXT = "a red square"
POINTS = np.array([[150.0, 200.0], [450.0, 300.0]])
POINT_LABELS = np.array([1, 0])
POINT_ARGS = ["150,200", "450,300,neg"]


def mask_iou(a, b):
    union = (a | b).sum()
    return 1.0 if union == 0 else (a & b).sum() / union


def _instances(out_dir):
    return json.load(open(os.path.join(out_dir, "result.json")))["instances"]


def _mask(out_dir, inst):
    return np.asarray(Image.open(os.path.join(out_dir, inst["mask_file"]))) > 127


def keep_threshold(ref):
    """A threshold that keeps ~40% of the queries (random weights score near 0.5)."""
    return float(torch.quantile(ref["scores"], 0.6))


def check_concept(ref, out_dir, thr, box_atol):
    """Same kept instances (ordered by score), scores, boxes within box_atol px, mask IoU >= 0.999."""
    keep = ref["scores"] > thr
    order = torch.argsort(ref["scores"][keep], descending=True)
    res = _instances(out_dir)
    assert len(res) == int(keep.sum()) > 0
    np.testing.assert_allclose([r["score"] for r in res], ref["scores"][keep][order].numpy(),
                               rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose([r["box"] for r in res], ref["boxes"][keep][order].numpy(), atol=box_atol)
    for r, m in zip(res, ref["masks"][keep][order][:, 0].numpy()):
        assert mask_iou(_mask(out_dir, r), m) >= 0.999


def official_points(model, state):
    with torch.no_grad():
        masks, ious, _ = model.predict_inst(state, point_coords=POINTS, point_labels=POINT_LABELS,
                                            multimask_output=True)
    return masks, ious


def check_point(masks, ious, out_dir):
    """One instance: the highest-IoU multimask output, IoU score equal, mask IoU >= 0.999."""
    res = _instances(out_dir)
    best = int(np.argmax(ious))
    assert len(res) == 1 and res[0]["score"] == pytest.approx(float(ious[best]), abs=1e-5)
    assert mask_iou(_mask(out_dir, res[0]), masks[best] > 0.5) >= 0.999
