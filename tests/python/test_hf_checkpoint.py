"""`sam3-tvm compile --checkpoint model.safetensors` in the Hugging Face transformers layout.

The reference is transformers itself (a second, independent implementation of SAM 3):
its `Sam3VideoModel` is built at our tiny sizes with random weights (hf_tiny.py), saved
with `save_pretrained`, and the file is compiled into a bundle. Then
- the official model loaded from the file agrees with transformers module by module
  (detector text and exemplar prompts; the SAM heads on clicks; memory encoder and
  memory attention), and
- the C++ CLI on the compiled bundle gives transformers' detections and masks.
A transformers-only file (Sam3Model: no tracker), damaged files and the full-size key
layout are checked too.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import hf_tiny
from conftest import ROOT, SAMPLE
from parity import POINT_ARGS, POINT_LABELS, POINTS, TEXT, check_concept, check_point, keep_threshold, \
    official_points

CLI = os.environ.get("SAM3_CLI", os.path.join(ROOT, "build", "sam3"))
BOX = (80, 120, 240, 280)  # x0, y0, x1, y1 in pixels of the 640x480 sample


@pytest.fixture(scope="module")
def hf():
    return hf_tiny.build(seed=0)


@pytest.fixture(scope="module")
def hf_file(hf, tmp_path_factory):
    folder = tmp_path_factory.mktemp("hf")
    hf.save_pretrained(str(folder))
    return str(folder / "model.safetensors")


@pytest.fixture(scope="module")
def mapped(hf_file):
    """The official tiny model with the file's weights (a different seed underneath)."""
    from sam3_tvm.model.builder import build_model

    return build_model("tiny", checkpoint=hf_file, seed=7)


@pytest.fixture(scope="module")
def bundle(hf_file, tmp_path_factory):
    from sam3_tvm.bundle.writer import compile_bundle

    out = str(tmp_path_factory.mktemp("bundle") / "hf")
    compile_bundle("tiny", out, checkpoint=hf_file)
    return out


def _pixels(image, size):
    """The official preprocessing (stretch, [-1, 1]) as one tensor for both models."""
    import torchvision.transforms.v2.functional as TF

    x = TF.to_dtype(TF.to_image(image), torch.uint8, scale=True)
    x = TF.to_dtype(TF.resize(x, [size, size]), torch.float32, scale=True)
    return TF.normalize(x, [0.5] * 3, [0.5] * 3)[None]


def _hf_concept(hf, mapped, box=None):
    """transformers' detector on the sample: every query's score, pixel box and mask,
    post-processed as the official pipeline does (sigmoid(logit) * sigmoid(presence);
    xyxy boxes times the size; logits resized bilinearly, then > 0)."""
    from PIL import Image

    image = Image.open(SAMPLE).convert("RGB")
    W, H = image.size
    ids = mapped.backbone.language_backbone.tokenizer([TEXT], context_length=32)
    if box is None:  # transformers skips the geometry encoder without boxes; the official
        # model always runs it (its CLS token); a padding box (label -10) does the same
        boxes, labels = torch.zeros(1, 1, 4), torch.full((1, 1), -10)
    else:
        x0, y0, x1, y1 = box
        boxes = torch.tensor([[[(x0 + x1) / 2 / W, (y0 + y1) / 2 / H, (x1 - x0) / W, (y1 - y0) / H]]])
        labels = torch.ones(1, 1, dtype=torch.long)
    with torch.no_grad():
        out = hf.detector_model(pixel_values=_pixels(image, hf_tiny.IMAGE), input_ids=ids,
                                attention_mask=(ids != 0).long(), input_boxes=boxes,
                                input_boxes_labels=labels)
        logits = F.interpolate(out.pred_masks, size=(H, W), mode="bilinear", align_corners=False)[0]
    scores = (out.pred_logits.sigmoid() * out.presence_logits.sigmoid())[0]
    xyxy = out.pred_boxes[0] * torch.tensor([W, H, W, H])
    return {"scores": scores, "boxes": xyxy, "masks": (logits > 0)[:, None], "logits": logits}


def _official_concept(mapped, box=None):
    from sam3.model.sam3_image_processor import Sam3Processor
    from sam3_tvm.tools.predict import load_image

    proc = Sam3Processor(mapped, resolution=hf_tiny.IMAGE, device="cpu", confidence_threshold=0.0)
    state = proc.set_image(load_image(SAMPLE))
    W, H = 640, 480
    with torch.no_grad():
        ref = proc.set_text_prompt(TEXT, state)
        if box is not None:
            x0, y0, x1, y1 = box
            ref = proc.add_geometric_prompt([(x0 + x1) / 2 / W, (y0 + y1) / 2 / H, (x1 - x0) / W,
                                             (y1 - y0) / H], True, state)
    return ref


def test_file_has_the_transformers_layout(hf_file):
    from safetensors import safe_open

    with safe_open(hf_file, "pt") as f:
        keys = list(f.keys())
    assert {k.split(".")[0] for k in keys} == {"detector_model", "tracker_model", "tracker_neck"}
    assert "detector_model.vision_encoder.backbone.layers.0.attention.q_proj.weight" in keys
    assert not any("freqs_cis" in k or "qkv" in k or "in_proj" in k for k in keys)


def test_every_weight_comes_from_the_file(hf, mapped):
    """Apart from the tensors the layout does not carry (hf_checkpoint.FILLED), every
    official tensor is a transformers tensor: equal, transposed, the q/k/v rows
    concatenated, or rows of one (the point embeddings). Nothing keeps the seed-7 init."""
    from sam3_tvm.model.builder import build_model

    seed7 = build_model("tiny", seed=7).state_dict()
    hf_tensors = [v.flatten() for v in hf.state_dict().values()]
    whole = {v.numpy().tobytes() for v in hf_tensors}

    def found(value):
        flat = value.flatten()
        if flat.numpy().tobytes() in whole or value.t().flatten().numpy().tobytes() in whole:
            return True
        if flat.numel() % 3 == 0 and all(c.numpy().tobytes() in whole for c in flat.chunk(3)):
            return True
        n = flat.numel()
        return any(v.numel() > n and v.numel() % n == 0 and
                   any(torch.equal(v[i:i + n], flat) for i in range(0, v.numel(), n)) for v in hf_tensors)

    for key, value in mapped.state_dict().items():
        if key.endswith("freqs_cis"):
            assert torch.equal(value, seed7[key]), key  # computed, not loaded
        elif key.startswith("geometry_encoder.points_"):
            assert not value.any(), key
        else:
            assert not torch.equal(value, seed7[key]), key
            assert found(value[:, 1:] if key.endswith("pos_embed") else value), key


@pytest.mark.parametrize("box", [None, BOX], ids=["text", "text+box"])
def test_official_model_from_the_file_equals_transformers(hf, mapped, box):
    ref = _official_concept(mapped, box)
    got = _hf_concept(hf, mapped, box)
    torch.testing.assert_close(got["scores"], ref["scores"], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(got["boxes"], ref["boxes"], atol=1e-3, rtol=1e-5)
    # official masks_logits are probabilities of the resized logits
    torch.testing.assert_close(got["logits"].sigmoid(), ref["masks_logits"][:, 0], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("box", [None, BOX], ids=["text", "text+box"])
def test_bundle_from_the_file_gives_transformers_detections(hf, mapped, bundle, box, tmp_path):
    """The C++ CLI on the compiled bundle against transformers' forward: the same kept
    instances in score order, scores, boxes within 0.5 px, mask IoU >= 0.999."""
    ref = _hf_concept(hf, mapped, box)
    thr = keep_threshold(ref)
    args = ["--text", TEXT, "--threshold", repr(thr)] + (["--box", ",".join(map(str, box))] if box else [])
    r = subprocess.run([CLI, "segment", "--bundle", bundle, "--image", SAMPLE, "--out", str(tmp_path), *args],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    check_concept(ref, str(tmp_path), thr, box_atol=0.5)


def _hf_tracker(hf):
    """transformers' image tracker (Sam3TrackerModel) assembled from the video model's
    parts as transformers runs them on a frame: the detector's ViT, the tracker's neck,
    the tracker's prompt encoder and mask decoder."""
    from transformers import Sam3TrackerConfig, Sam3TrackerModel

    cfg = hf.config.tracker_config
    # the tracker uses three FPN levels (Sam3VideoModel.get_vision_features_for_tracker
    # drops the 0.5x one)
    vision = dict(cfg.vision_config.to_dict(), scale_factors=[4.0, 2.0, 1.0])
    model = Sam3TrackerModel(Sam3TrackerConfig(vision_config=vision,
                                               prompt_encoder_config=cfg.prompt_encoder_config.to_dict(),
                                               mask_decoder_config=cfg.mask_decoder_config.to_dict())).eval()
    sd = {}
    for k, v in hf.detector_model.vision_encoder.backbone.state_dict().items():
        sd["vision_encoder.backbone." + k] = v
    for k, v in hf.tracker_neck.state_dict().items():
        if not k.startswith("fpn_layers.3."):  # the unused 0.5x level's convolutions
            sd["vision_encoder.neck." + k] = v
    trk = hf.tracker_model.state_dict()
    for k in model.state_dict():
        if not k.startswith("vision_encoder."):
            sd[k] = trk[k]
    model.load_state_dict(sd, strict=True)
    return model


def test_click_heads_equal_transformers(hf, mapped):
    """Two clicks (positive, negative): official `predict_inst` on the model from the
    file against transformers' Sam3TrackerModel: IoU predictions and the three low-res
    mask logits."""
    from PIL import Image
    from sam3.model.sam3_image_processor import Sam3Processor
    from sam3_tvm.tools.predict import load_image

    proc = Sam3Processor(mapped, resolution=hf_tiny.IMAGE, device="cpu", confidence_threshold=0.0)
    state = proc.set_image(load_image(SAMPLE))
    with torch.no_grad():
        _, ious, low_res = mapped.predict_inst(state, point_coords=POINTS, point_labels=POINT_LABELS,
                                               multimask_output=True)
    tracker = _hf_tracker(hf)
    image = Image.open(SAMPLE).convert("RGB")
    scale = torch.tensor([hf_tiny.IMAGE / 640, hf_tiny.IMAGE / 480])
    points = torch.tensor(POINTS, dtype=torch.float32) * scale
    with torch.no_grad():
        out = tracker(pixel_values=_pixels(image, hf_tiny.IMAGE), input_points=points[None, None],
                      input_labels=torch.tensor(POINT_LABELS)[None, None], multimask_output=True)
    np.testing.assert_allclose(out.iou_scores[0, 0].numpy(), ious, atol=1e-5)
    np.testing.assert_allclose(out.pred_masks[0, 0].clamp(-32, 32).numpy(), low_res, atol=1e-5)


def test_bundle_clicks_equal_the_model_from_the_file(mapped, bundle, tmp_path):
    """The C++ click path against the official model loaded from the same file (which the
    test above ties to transformers)."""
    from sam3.model.sam3_image_processor import Sam3Processor
    from sam3_tvm.tools.predict import load_image

    proc = Sam3Processor(mapped, resolution=hf_tiny.IMAGE, device="cpu", confidence_threshold=0.0)
    masks, ious = official_points(mapped, proc.set_image(load_image(SAMPLE)))
    args = [a for p in POINT_ARGS for a in ("--point", p)]
    r = subprocess.run([CLI, "segment", "--bundle", bundle, "--image", SAMPLE, "--out", str(tmp_path), *args],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    check_point(masks, ious, str(tmp_path))


def test_memory_encoder_equals_transformers(hf, mapped):
    g = torch.Generator().manual_seed(3)
    G = hf_tiny.IMAGE // hf_tiny.PATCH
    pix = torch.randn(1, hf_tiny.D, G, G, generator=g)
    masks = torch.rand(1, 1, 16 * G, 16 * G, generator=g)
    with torch.no_grad():
        ref = mapped.inst_interactive_predictor.model.maskmem_backbone(pix, masks, skip_mask_sigmoid=True)
        feats, pos = hf.tracker_model.memory_encoder(pix, masks)
    torch.testing.assert_close(feats, ref["vision_features"], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(pos, ref["vision_pos_enc"][0], atol=1e-5, rtol=1e-4)


def test_memory_attention_equals_transformers(hf, mapped):
    """Two spatial memories and 2 object pointers (8 tokens of width 16, RoPE skipped)."""
    g = torch.Generator().manual_seed(4)
    G, C, Cm = hf_tiny.IMAGE // hf_tiny.PATCH, hf_tiny.D, hf_tiny.MEM
    src, src_pos = torch.randn(G * G, 1, C, generator=g), torch.randn(G * G, 1, C, generator=g)
    n_ptr = 2 * C // Cm
    mem = torch.randn(2 * G * G + n_ptr, 1, Cm, generator=g)
    mem_pos = torch.randn(2 * G * G + n_ptr, 1, Cm, generator=g)
    trk = mapped.inst_interactive_predictor.model
    with torch.no_grad():
        ref = trk.transformer.encoder(src=[src], src_key_padding_mask=[None], src_pos=[src_pos], prompt=mem,
                                      prompt_pos=mem_pos, prompt_key_padding_mask=None, feat_sizes=[(G, G)],
                                      num_obj_ptr_tokens=n_ptr)["memory"]
        got = hf.tracker_model.memory_attention(current_vision_features=src, memory=mem,
                                                current_vision_position_embeddings=src_pos,
                                                memory_posision_embeddings=mem_pos,
                                                num_object_pointer_tokens=n_ptr)
    got = got[0] if isinstance(got, tuple) else got
    torch.testing.assert_close(got.reshape(ref.shape), ref, atol=1e-4, rtol=1e-4)


def _compile(checkpoint, tmp_path):
    return subprocess.run([sys.executable, "-m", "sam3_tvm.cli", "compile", "--config", "tiny",
                           "--checkpoint", checkpoint, "--out", str(tmp_path / "b")],
                          capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, PYTHONPATH=os.path.join(ROOT, "compiler")))


def _left(tmp_path):
    return sorted(os.listdir(tmp_path / "b"))


def _rewrite(hf_file, tmp_path, edit):
    from safetensors.torch import load_file, save_file

    sd = load_file(hf_file)
    edit(sd)
    path = str(tmp_path / "edited.safetensors")
    save_file(sd, path)
    return path


def test_detector_only_file_is_a_clear_error(hf, tmp_path):
    path = str(tmp_path / "detector")
    hf.detector_model.save_pretrained(path)
    r = _compile(os.path.join(path, "model.safetensors"), tmp_path)
    assert r.returncode != 0 and "holds only the detector" in r.stderr and "Traceback" not in r.stderr
    assert _left(tmp_path) == ["compile.log"]  # the log that explains the failure, no bundle


@pytest.mark.parametrize("edit, message", [
    (lambda sd: sd.pop("detector_model.detr_decoder.presence_token.weight"), "1 missing keys"),
    (lambda sd: sd.__setitem__("detector_model.extra.weight", torch.zeros(2)), "1 unexpected keys"),
    (lambda sd: sd.__setitem__("tracker_neck.fpn_layers.2.proj1.weight", torch.zeros(3, 3, 1, 1)),
     "sam2_convs.2.conv_1x1.weight: checkpoint (3, 3, 1, 1)"),
    (lambda sd: sd.pop("detector_model.detr_encoder.layers.0.self_attn.k_proj.bias"), "not all present"),
], ids=["missing", "unexpected", "shape", "split-qkv"])
def test_damaged_file_is_a_clear_error(hf_file, tmp_path, edit, message):
    r = _compile(_rewrite(hf_file, tmp_path, edit), tmp_path)
    assert r.returncode != 0 and message in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert _left(tmp_path) == ["compile.log"]  # the log that explains the failure, no bundle


def test_truncated_file_is_a_clear_error(hf_file, tmp_path):
    data = open(hf_file, "rb").read()
    path = tmp_path / "cut.safetensors"
    path.write_bytes(data[: len(data) // 2])
    r = _compile(str(path), tmp_path)
    assert r.returncode != 0 and "cannot read safetensors checkpoint" in r.stderr and "Traceback" not in r.stderr


def test_bf16_file_loads_as_fp32(hf_file, tmp_path, mapped):
    from sam3_tvm.model.builder import build_model

    path = _rewrite(hf_file, tmp_path, lambda sd: sd.update({k: v.to(torch.bfloat16) for k, v in sd.items()}))
    model = build_model("tiny", checkpoint=path)
    w = model.transformer.decoder.query_embed.weight
    assert w.dtype == torch.float32
    torch.testing.assert_close(w, mapped.transformer.decoder.query_embed.weight.bfloat16().float())


def test_full_size_layout_maps_onto_the_official_full_model():
    """transformers' default (full-size) Sam3VideoModel names and shapes, without weights
    (meta tensors), map onto the official full model with nothing missing or extra."""
    from transformers import Sam3VideoConfig, Sam3VideoModel
    from sam3_tvm.model.builder import build_model
    from sam3_tvm.model.checkpoint import check_keys
    from sam3_tvm.model.hf_checkpoint import hf_to_official

    with torch.device("meta"):
        hf = Sam3VideoModel(Sam3VideoConfig())
    official = build_model("full")
    check_keys(official, hf_to_official(hf.state_dict(), official), "full-size layout")
