"""End-to-end parity of the C++ `sam3` CLI with the official PyTorch pipeline
(same tiny weights, same image, same prompts): same kept instances, boxes within
0.5 px, mask IoU >= 0.999. `make test` builds the CLI and sets SAM3_CLI."""
import os
import subprocess

import pytest
import torch

from sam3_tvm.tools.predict import load_image

from conftest import ROOT, SAMPLE
from parity import POINT_ARGS, TEXT, check_concept, check_point, keep_threshold, official_points

CLI = os.environ.get("SAM3_CLI", os.path.join(ROOT, "build", "sam3"))


def cli(*args):
    if not os.path.isfile(CLI):
        pytest.fail(f"C++ CLI not built at {CLI} (run `make cpp`)")
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=600)


def segment(bundle, out_dir, *prompt):
    r = cli("segment", "--bundle", bundle, "--image", SAMPLE, "--out", str(out_dir), *prompt)
    assert r.returncode == 0, r.stderr


def test_text_prompt(official, tiny_bundle, tmp_path):
    model, proc = official
    state = proc.set_image(load_image(SAMPLE))
    with torch.no_grad():
        ref = proc.set_text_prompt(TEXT, state)
    thr = keep_threshold(ref)
    segment(tiny_bundle, tmp_path, "--text", TEXT, "--threshold", repr(thr))
    check_concept(ref, str(tmp_path), thr, box_atol=0.5)


def test_text_and_exemplar_prompt(official, tiny_bundle, tmp_path):
    model, proc = official
    state = proc.set_image(load_image(SAMPLE))
    x0, y0, x1, y1, W, H = 80, 120, 240, 280, 640, 480
    with torch.no_grad():
        proc.set_text_prompt(TEXT, state)
        ref = proc.add_geometric_prompt([(x0 + x1) / 2 / W, (y0 + y1) / 2 / H, (x1 - x0) / W,
                                         (y1 - y0) / H], True, state)
    thr = keep_threshold(ref)
    segment(tiny_bundle, tmp_path, "--text", TEXT, "--box", f"{x0},{y0},{x1},{y1}", "--threshold", repr(thr))
    check_concept(ref, str(tmp_path), thr, box_atol=0.5)


def test_point_prompt(official, tiny_bundle, tmp_path):
    model, proc = official
    masks, ious = official_points(model, proc.set_image(load_image(SAMPLE)))
    segment(tiny_bundle, tmp_path, *[a for p in POINT_ARGS for a in ("--point", p)])
    check_point(masks, ious, str(tmp_path))
