"""End-to-end parity of the C++ `sam3` CLI with the official PyTorch pipeline
(same tiny weights, same image, same prompts): same kept instances, boxes within
0.5 px, mask IoU >= 0.999. `make test` builds the CLI and sets SAM3_CLI."""
import json
import os
import subprocess

import numpy as np
import pytest
import torch
from PIL import Image

from sam3_tvm.model import build_model
from sam3_tvm.predict import load_image

from conftest import ROOT, SAMPLE

CLI = os.environ.get("SAM3_CLI", os.path.join(ROOT, "build", "sam3"))


def cli(*args):
    if not os.path.isfile(CLI):
        pytest.fail(f"C++ CLI not built at {CLI} (run `make cpp`)")
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def official():
    from sam3.model.sam3_image_processor import Sam3Processor

    model = build_model("tiny", seed=0)
    proc = Sam3Processor(model, resolution=model.sam3_tvm_config.image_size, device="cpu",
                         confidence_threshold=0.0)
    return model, proc


def _iou(a, b):
    union = (a | b).sum()
    return 1.0 if union == 0 else (a & b).sum() / union


def _check_concept(ref, out_dir, thr):
    keep = ref["scores"] > thr
    order = torch.argsort(ref["scores"][keep], descending=True)
    res = json.load(open(os.path.join(out_dir, "result.json")))["instances"]
    assert len(res) == int(keep.sum()) > 0
    np.testing.assert_allclose([r["score"] for r in res], ref["scores"][keep][order].numpy(),
                               rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose([r["box"] for r in res], ref["boxes"][keep][order].numpy(), atol=0.5)
    for r, m in zip(res, ref["masks"][keep][order][:, 0].numpy()):
        got = np.asarray(Image.open(os.path.join(out_dir, r["mask_file"]))) > 127
        assert _iou(got, m) >= 0.999


def test_text_prompt(official, tiny_bundle, tmp_path):
    model, proc = official
    state = proc.set_image(load_image(SAMPLE))
    with torch.no_grad():
        ref = proc.set_text_prompt("a red square", state)
    thr = float(torch.quantile(ref["scores"], 0.6))
    r = cli("segment", "--bundle", tiny_bundle, "--image", SAMPLE, "--text", "a red square",
            "--threshold", repr(thr), "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr
    _check_concept(ref, str(tmp_path), thr)


def test_text_and_exemplar_prompt(official, tiny_bundle, tmp_path):
    model, proc = official
    state = proc.set_image(load_image(SAMPLE))
    x0, y0, x1, y1, W, H = 80, 120, 240, 280, 640, 480
    with torch.no_grad():
        proc.set_text_prompt("a red square", state)
        ref = proc.add_geometric_prompt([(x0 + x1) / 2 / W, (y0 + y1) / 2 / H, (x1 - x0) / W,
                                         (y1 - y0) / H], True, state)
    thr = float(torch.quantile(ref["scores"], 0.6))
    r = cli("segment", "--bundle", tiny_bundle, "--image", SAMPLE, "--text", "a red square",
            "--box", f"{x0},{y0},{x1},{y1}", "--threshold", repr(thr), "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr
    _check_concept(ref, str(tmp_path), thr)


def test_point_prompt(official, tiny_bundle, tmp_path):
    model, proc = official
    state = proc.set_image(load_image(SAMPLE))
    with torch.no_grad():
        masks, ious, _ = model.predict_inst(state, point_coords=np.array([[150.0, 200.0], [450.0, 300.0]]),
                                            point_labels=np.array([1, 0]), multimask_output=True)
    r = cli("segment", "--bundle", tiny_bundle, "--image", SAMPLE, "--point", "150,200",
            "--point", "450,300,neg", "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr
    res = json.load(open(tmp_path / "result.json"))["instances"]
    best = int(np.argmax(ious))
    assert len(res) == 1 and res[0]["score"] == pytest.approx(float(ious[best]), abs=1e-5)
    got = np.asarray(Image.open(tmp_path / res[0]["mask_file"])) > 127
    assert _iou(got, masks[best] > 0.5) >= 0.999
