"""The bundle pipeline (`sam3-tvm run`) against the official Sam3Processor and
interactive predictor, with the same tiny weights (official complex RoPE kept)."""
import torch

from sam3_tvm.tools.predict import load_image, run

from conftest import SAMPLE
from parity import POINT_ARGS, TEXT, check_concept, check_point, keep_threshold, official_points


def test_text_prompt_matches_official(official, tiny_bundle, tmp_path):
    model, proc = official
    state = proc.set_image(load_image(SAMPLE))
    with torch.no_grad():
        ref = proc.set_text_prompt(TEXT, state)
    thr = keep_threshold(ref)
    run(tiny_bundle, SAMPLE, str(tmp_path), text=TEXT, threshold=thr)
    check_concept(ref, str(tmp_path), thr, box_atol=0.05)


def test_point_prompt_matches_official(official, tiny_bundle, tmp_path):
    model, proc = official
    masks, ious = official_points(model, proc.set_image(load_image(SAMPLE)))
    run(tiny_bundle, SAMPLE, str(tmp_path), points=POINT_ARGS)
    check_point(masks, ious, str(tmp_path))
