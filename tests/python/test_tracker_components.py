"""The tracker's component wrappers (model/memory_*.py, mask_downsample.py, the extended
interactive decoder) against the official Sam3TrackerBase methods they stand for, in
PyTorch (the compiled bundle is checked against the same references by `verify`)."""
import pytest
import torch
import torch.nn.functional as F

from sam3_tvm.model import components as C
from sam3_tvm.model.memory_attention import official_memory_attention


@pytest.fixture(scope="module")
def model():
    from sam3_tvm.model.builder import build_model

    return build_model("tiny", seed=0)


def rel(a, b):
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("num_mem,num_ptrs", [(1, 0), (2, 1), (7, 15), (10, 19)])
def test_memory_attention_equals_the_official_encoder(model, num_mem, num_ptrs):
    ins = C.example_inputs("memory_attention", model.sam3_tvm_config, seed=3, num_mem=num_mem,
                           num_ptrs=num_ptrs)
    with torch.no_grad():
        ours = C.make("memory_attention", model)(*ins)
        ref = official_memory_attention(model, *ins)
    assert rel(ours, ref) < 1e-5


def test_unused_pointer_slots_do_not_matter(model):
    cfg = model.sam3_tvm_config
    ins = C.example_inputs("memory_attention", cfg, seed=4, num_mem=2, num_ptrs=3)
    garbage = [x.clone() for x in ins]
    garbage[3][3:] = torch.randn_like(garbage[3][3:]) * 100  # values of unused slots
    garbage[4][3:] = 7.0
    w = C.make("memory_attention", model)
    with torch.no_grad():
        assert torch.equal(w(*ins), w(*garbage))


def test_memory_encoder_equals_encode_new_memory(model):
    trk = model.inst_interactive_predictor.model
    cfg = model.sam3_tvm_config
    g = torch.Generator().manual_seed(5)
    pix = torch.randn(1, cfg.d_model, cfg.grid, cfg.grid, generator=g)
    high_res = torch.randn(1, 1, cfg.image_size, cfg.image_size, generator=g) * 4
    for score, from_clicks in ((2.0, False), (-1.0, True)):
        obj = torch.tensor([[score]])
        with torch.no_grad():
            ref, _ = trk._encode_new_memory(image=None, current_vision_feats=[pix.flatten(2).permute(2, 0, 1)],
                                            feat_sizes=[(cfg.grid, cfg.grid)], pred_masks_high_res=high_res,
                                            object_score_logits=obj, is_mask_from_pts=from_clicks)
            # the host part: sigmoid (or > 0), x20 - 10, resize to interpol size with antialias
            m = (high_res > 0).float() if from_clicks else torch.sigmoid(high_res)
            m = F.interpolate(m * 20 - 10, size=(cfg.input_mask_size,) * 2, mode="bilinear",
                              align_corners=False, antialias=True)
            ours = C.make("memory_encoder", model)(pix, m, obj)
        assert rel(ours, ref) < 1e-5


@pytest.mark.parametrize("multimask", [True, False])
def test_decoder_pointer_equals_forward_sam_heads(model, multimask):
    """The pointer the runtime picks (best-IoU token for multimask, token 0 otherwise)
    from the decoder's four, as _forward_sam_heads computes it."""
    trk = model.inst_interactive_predictor.model
    cfg = model.sam3_tvm_config
    embed, hr0, hr1, coords, labels, mask, has_mask, no_mem = C.example_inputs(
        "interactive_decoder", cfg, seed=6, num_points=1 if multimask else 3)
    with torch.no_grad():
        ref = trk._forward_sam_heads(embed, point_inputs={"point_coords": coords, "point_labels": labels},
                                     high_res_features=[hr0, hr1], multimask_output=multimask)
        masks, iou, obj, ptrs, no_obj = C.make("interactive_decoder", model)(
            embed, hr0, hr1, coords, labels, mask, torch.zeros(1), torch.zeros(1))
    token = 1 + int(iou[0, 1:].argmax()) if multimask else 0
    assert rel(ptrs[:, token], ref[5]) < 1e-5
    assert torch.allclose(obj, ref[6])
    assert torch.equal(no_obj, trk.no_obj_ptr)


def test_mask_downsample_and_mask_as_output(model):
    """_use_mask_as_output's pointer: the heads on the raw features with the
    downsampled mask as prompt, single-mask token 0."""
    trk = model.inst_interactive_predictor.model
    cfg = model.sam3_tvm_config
    g = torch.Generator().manual_seed(7)
    feats = torch.randn(1, cfg.d_model, cfg.grid, cfg.grid, generator=g)
    hr0 = torch.randn(1, cfg.d_model // 8, 4 * cfg.grid, 4 * cfg.grid, generator=g)
    hr1 = torch.randn(1, cfg.d_model // 4, 2 * cfg.grid, 2 * cfg.grid, generator=g)
    mask = torch.zeros(1, 1, cfg.input_mask_size, cfg.input_mask_size)
    mask[..., 40:200, 60:300] = 1.0
    with torch.no_grad():
        ref = trk._use_mask_as_output(feats, [hr0, hr1], mask)
        prompt = C.make("mask_downsample", model)(mask)
        _, _, _, ptrs, _ = C.make("interactive_decoder", model)(
            feats, hr0, hr1, torch.zeros(1, 1, 2), -torch.ones(1, 1, dtype=torch.int32), prompt,
            torch.ones(1), torch.zeros(1))
    assert rel(ptrs[:, 0], ref[5]) < 1e-5
