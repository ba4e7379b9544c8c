"""Checkpoints in the Hugging Face `transformers` layout, mapped to the official model.

SAM 3 weights are published twice: the official `sam3.pt` (see `checkpoint.py`) and a
`model.safetensors` for `transformers`. The latter is a `Sam3VideoModel` state dict:
`detector_model.*` (the `Sam3Model` image detector), `tracker_model.*` (the SAM heads,
memory encoder and memory attention) and `tracker_neck.*` (the tracker's FPN). A file
saved from `Sam3Model` alone holds the detector keys without the prefix and no tracker.

The names differ throughout and the fused projections are split: the ViT's `qkv` and
every `nn.MultiheadAttention` `in_proj` become `q_proj`/`k_proj`/`v_proj`; MLPs become
`layer1..3` or `proj_in`/`layers`/`proj_out`; `text_projection` is stored transposed;
`pos_embed` loses its (unused) class-token row. `hf_to_official` undoes all of it and
returns a state dict with the official image model's names (`Sam3Image` with the
interactive predictor), which `load_hf_checkpoint` then checks as strictly as a
`sam3.pt`: every key present, nothing unexpected, every shape equal.

A few official tensors have no counterpart in the file and are filled here, each for a
stated reason (`FILLED`); everything else must come from the file.
"""

from __future__ import annotations

import os
import re

from sam3_tvm.errors import Sam3TvmError

TRACKER = "inst_interactive_predictor.model."

# official tensors the transformers layout does not carry, and why filling them is exact
FILLED = {
    "attn.freqs_cis": "RoPE tables: computed from the config when the model is built "
                      "(transformers recomputes them too)",
    "trunk.pos_embed[0]": "the class-token row of the ViT position table: the official ViT "
                          "drops it before use (retain_cls_token=False); zeros",
    "geometry_encoder.points_": "point prompts of the detector's geometry encoder: "
                                "transformers' encoder is boxes-only and this runtime "
                                "never feeds points there (clicks go to the SAM heads); zeros",
}

# (pattern, replacement) applied in order to a detector key (prefix removed); q/k/v
# were fused into `.qkv.` beforehand
_DETECTOR_RULES = [
    # ViT trunk
    (r"^vision_encoder\.backbone\.embeddings\.patch_embeddings\.projection\.",
     "backbone.vision_backbone.trunk.patch_embed.proj."),
    (r"^vision_encoder\.backbone\.embeddings\.position_embeddings$", "backbone.vision_backbone.trunk.pos_embed"),
    (r"^vision_encoder\.backbone\.layer_norm\.", "backbone.vision_backbone.trunk.ln_pre."),
    (r"^vision_encoder\.backbone\.layers\.(\d+)\.layer_norm(\d)\.",
     r"backbone.vision_backbone.trunk.blocks.\1.norm\2."),
    (r"^vision_encoder\.backbone\.layers\.(\d+)\.attention\.qkv\.",
     r"backbone.vision_backbone.trunk.blocks.\1.attn.qkv."),
    (r"^vision_encoder\.backbone\.layers\.(\d+)\.attention\.o_proj\.",
     r"backbone.vision_backbone.trunk.blocks.\1.attn.proj."),
    (r"^vision_encoder\.backbone\.layers\.(\d+)\.mlp\.", r"backbone.vision_backbone.trunk.blocks.\1.mlp."),
    # detector FPN (the tracker's FPN has the same rules, see _neck)
    (r"^vision_encoder\.neck\.", "backbone.vision_backbone.convs."),
    # text encoder (CLIP names in transformers, OpenCLIP names officially)
    (r"^text_encoder\.text_model\.embeddings\.token_embedding\.",
     "backbone.language_backbone.encoder.token_embedding."),
    (r"^text_encoder\.text_model\.embeddings\.position_embedding\.weight$",
     "backbone.language_backbone.encoder.positional_embedding"),
    (r"^text_encoder\.text_model\.final_layer_norm\.", "backbone.language_backbone.encoder.ln_final."),
    (r"^text_encoder\.text_model\.encoder\.layers\.(\d+)\.",
     r"backbone.language_backbone.encoder.transformer.resblocks.\1."),
    (r"^text_encoder\.text_projection\.weight$", "backbone.language_backbone.encoder.text_projection"),
    (r"^text_projection\.", "backbone.language_backbone.resizer."),
    # geometry encoder
    (r"^geometry_encoder\.vision_layer_norm\.", "geometry_encoder.img_pre_norm."),
    (r"^geometry_encoder\.prompt_layer_norm\.", "geometry_encoder.norm."),
    (r"^geometry_encoder\.output_layer_norm\.", "geometry_encoder.encode_norm."),
    (r"^geometry_encoder\.layers\.(\d+)\.", r"geometry_encoder.encode.\1."),
    # DETR encoder / decoder
    (r"^detr_encoder\.layers\.", "transformer.encoder.layers."),
    (r"^detr_decoder\.output_layer_norm\.", "transformer.decoder.norm."),
    (r"^detr_decoder\.box_head\.", "transformer.decoder.bbox_embed."),
    (r"^detr_decoder\.presence_head\.", "transformer.decoder.presence_token_head."),
    (r"^detr_decoder\.presence_layer_norm\.", "transformer.decoder.presence_token_out_norm."),
    (r"^detr_decoder\.box_rpb_embed_(x|y)\.", r"transformer.decoder.boxRPB_embed_\1."),
    (r"^detr_decoder\.layers\.(\d+)\.self_attn_layer_norm\.", r"transformer.decoder.layers.\1.norm2."),
    (r"^detr_decoder\.layers\.(\d+)\.text_cross_attn_layer_norm\.", r"transformer.decoder.layers.\1.catext_norm."),
    (r"^detr_decoder\.layers\.(\d+)\.vision_cross_attn_layer_norm\.", r"transformer.decoder.layers.\1.norm1."),
    (r"^detr_decoder\.layers\.(\d+)\.mlp_layer_norm\.", r"transformer.decoder.layers.\1.norm3."),
    (r"^detr_decoder\.layers\.(\d+)\.text_cross_attn\.", r"transformer.decoder.layers.\1.ca_text."),
    (r"^detr_decoder\.layers\.(\d+)\.vision_cross_attn\.", r"transformer.decoder.layers.\1.cross_attn."),
    (r"^detr_decoder\.", "transformer.decoder."),
    # segmentation head
    (r"^mask_decoder\.mask_embedder\.", "segmentation_head.mask_predictor.mask_embed."),
    (r"^mask_decoder\.instance_projection\.", "segmentation_head.instance_seg_head."),
    (r"^mask_decoder\.semantic_projection\.", "segmentation_head.semantic_seg_head."),
    (r"^mask_decoder\.prompt_cross_attn_norm\.", "segmentation_head.cross_attn_norm."),
    (r"^mask_decoder\.prompt_cross_attn\.", "segmentation_head.cross_attend_prompt."),
    (r"^mask_decoder\.", "segmentation_head."),
    # scoring
    (r"^dot_product_scoring\.text_mlp_out_norm\.", "dot_prod_scoring.prompt_mlp.out_norm."),
    (r"^dot_product_scoring\.text_mlp\.", "dot_prod_scoring.prompt_mlp."),
    (r"^dot_product_scoring\.text_proj\.", "dot_prod_scoring.prompt_proj."),
    (r"^dot_product_scoring\.query_proj\.", "dot_prod_scoring.hs_proj."),
]

# inside any detector transformer layer (after the rules above)
_LAYER_RULES = [
    (r"\.resblocks\.(\d+)\.self_attn\.qkv\.(weight|bias)$", r".resblocks.\1.attn.in_proj_\2"),
    (r"\.resblocks\.(\d+)\.self_attn\.out_proj\.", r".resblocks.\1.attn.out_proj."),
    (r"\.resblocks\.(\d+)\.layer_norm(\d)\.", r".resblocks.\1.ln_\2."),
    (r"\.resblocks\.(\d+)\.mlp\.fc1\.", r".resblocks.\1.mlp.c_fc."),
    (r"\.resblocks\.(\d+)\.mlp\.fc2\.", r".resblocks.\1.mlp.c_proj."),
    (r"\.(self_attn|cross_attn_image|cross_attn|ca_text|cross_attend_prompt)\.qkv\.(weight|bias)$",
     r".\1.in_proj_\2"),
    (r"\.o_proj\.", ".out_proj."),
    (r"^(geometry_encoder\.encode\.\d+|transformer\.encoder\.layers\.\d+)\.cross_attn\.",
     r"\1.cross_attn_image."),
    (r"\.layer_norm(\d)\.", r".norm\1."),
    (r"^(geometry_encoder\.encode\.\d+|transformer\.(en|de)coder\.layers\.\d+)\.mlp\.fc1\.", r"\1.linear1."),
    (r"^(geometry_encoder\.encode\.\d+|transformer\.(en|de)coder\.layers\.\d+)\.mlp\.fc2\.", r"\1.linear2."),
    (r"\.layer(\d)\.", lambda m: f".layers.{int(m.group(1)) - 1}."),  # MLP layer1..3
]

_TRACKER_RULES = [
    (r"^no_memory_embedding$", "no_mem_embed"),
    (r"^no_memory_positional_encoding$", "no_mem_pos_enc"),
    (r"^memory_temporal_positional_encoding$", "maskmem_tpos_enc"),
    (r"^no_object_pointer$", "no_obj_ptr"),
    (r"^occlusion_spatial_embedding_parameter$", "no_obj_embed_spatial"),
    (r"^temporal_positional_encoding_projection_layer\.", "obj_ptr_tpos_proj."),
    (r"^object_pointer_proj\.", "obj_ptr_proj."),
    (r"^prompt_encoder\.mask_embed\.conv1\.", "sam_prompt_encoder.mask_downscaling.0."),
    (r"^prompt_encoder\.mask_embed\.layer_norm1\.", "sam_prompt_encoder.mask_downscaling.1."),
    (r"^prompt_encoder\.mask_embed\.conv2\.", "sam_prompt_encoder.mask_downscaling.3."),
    (r"^prompt_encoder\.mask_embed\.layer_norm2\.", "sam_prompt_encoder.mask_downscaling.4."),
    (r"^prompt_encoder\.mask_embed\.conv3\.", "sam_prompt_encoder.mask_downscaling.6."),
    (r"^prompt_encoder\.", "sam_prompt_encoder."),
    (r"^mask_decoder\.upscale_conv1\.", "sam_mask_decoder.output_upscaling.0."),
    (r"^mask_decoder\.upscale_layer_norm\.", "sam_mask_decoder.output_upscaling.1."),
    (r"^mask_decoder\.upscale_conv2\.", "sam_mask_decoder.output_upscaling.3."),
    (r"^mask_decoder\.transformer\.layer_norm_final_attn\.", "sam_mask_decoder.transformer.norm_final_attn."),
    (r"^mask_decoder\.transformer\.layers\.(\d+)\.mlp\.proj_in\.", r"sam_mask_decoder.transformer.layers.\1.mlp.lin1."),
    (r"^mask_decoder\.transformer\.layers\.(\d+)\.mlp\.proj_out\.", r"sam_mask_decoder.transformer.layers.\1.mlp.lin2."),
    (r"^mask_decoder\.", "sam_mask_decoder."),
    (r"^memory_attention\.layer_norm\.", "transformer.encoder.norm."),
    (r"^memory_attention\.layers\.", "transformer.encoder.layers."),
    (r"^memory_encoder\.feature_projection\.", "maskmem_backbone.pix_feat_proj."),
    (r"^memory_encoder\.projection\.", "maskmem_backbone.out_proj."),
    (r"^memory_encoder\.memory_fuser\.layers\.(\d+)\.scale$", r"maskmem_backbone.fuser.layers.\1.gamma"),
    (r"^memory_encoder\.memory_fuser\.layers\.(\d+)\.depthwise_conv\.", r"maskmem_backbone.fuser.layers.\1.dwconv."),
    (r"^memory_encoder\.memory_fuser\.layers\.(\d+)\.layer_norm\.", r"maskmem_backbone.fuser.layers.\1.norm."),
    (r"^memory_encoder\.memory_fuser\.layers\.(\d+)\.pointwise_conv(\d)\.", r"maskmem_backbone.fuser.layers.\1.pwconv\2."),
    (r"^memory_encoder\.mask_downsampler\.layers\.(\d+)\.conv\.",
     lambda m: f"maskmem_backbone.mask_downsampler.encoder.{3 * int(m.group(1))}."),
    (r"^memory_encoder\.mask_downsampler\.layers\.(\d+)\.layer_norm\.",
     lambda m: f"maskmem_backbone.mask_downsampler.encoder.{3 * int(m.group(1)) + 1}."),
    (r"\.o_proj\.", ".out_proj."),
    (r"\.layer_norm(\d)\.", r".norm\1."),
]


def _apply(rules, key: str) -> str:
    for pattern, repl in rules:
        key = re.sub(pattern, repl, key)
    return key


def _fuse_qkv(sd: dict) -> dict:
    """Concatenate `X.q_proj`, `X.k_proj`, `X.v_proj` into `X.qkv` (rows q, k, v: the
    order of the official fused `qkv` / `in_proj_weight`)."""
    import torch

    out = {}
    for key, value in sd.items():
        m = re.match(r"^(.*)\.(q|k|v)_proj\.(weight|bias)$", key)
        if not m:
            out[key] = value
            continue
        if m.group(2) != "q":
            continue
        base, kind = m.group(1), m.group(3)
        parts = [sd.get(f"{base}.{p}_proj.{kind}") for p in "qkv"]
        if any(p is None for p in parts):
            raise Sam3TvmError(f"{base}: q_proj/k_proj/v_proj {kind} are not all present")
        out[f"{base}.qkv.{kind}"] = torch.cat(parts, dim=0)
    leftover = [k for k in sd if re.match(r"^(.*)\.(k|v)_proj\.(weight|bias)$", k)
                and re.sub(r"\.(k|v)_proj\.", ".q_proj.", k) not in sd]
    if leftover:
        raise Sam3TvmError(f"{leftover[0]}: k_proj/v_proj without q_proj")
    return out


def _feedforward(sd: dict, prefix_re: str) -> dict:
    """transformers' `proj_in`, `layers.i`, `proj_out` MLPs → the official `layers.0..n-1`."""
    hidden: dict[str, int] = {}
    for key in sd:
        m = re.match(rf"^({prefix_re})\.layers\.(\d+)\.", key)
        if m:
            hidden[m.group(1)] = max(hidden.get(m.group(1), 0), int(m.group(2)) + 1)
    out = {}
    for key, value in sd.items():
        m = re.match(rf"^({prefix_re})\.(proj_in|proj_out|layers\.(\d+))\.(.*)$", key)
        if not m:
            out[key] = value
            continue
        base, part, rest = m.group(1), m.group(2), m.group(4)
        if part == "proj_in":
            index = 0
        elif part == "proj_out":
            index = hidden.get(base, 0) + 1
        else:
            index = int(m.group(3)) + 1
        out[f"{base}.layers.{index}.{rest}"] = value
    return out


def _neck(key: str, target: str) -> str:
    """`fpn_layers.N.{scale_layers.K, proj1, proj2}` → the official SimpleFPN names."""
    m = re.match(r"^fpn_layers\.(\d+)\.(scale_layers\.(\d+)|proj1|proj2)\.(.*)$", key)
    if not m:
        return target + key
    level, part, rest = m.group(1), m.group(2), m.group(4)
    if part == "proj1":
        name = "conv_1x1"
    elif part == "proj2":
        name = "conv_3x3"
    elif level == "0":  # ConvT, GELU, ConvT
        name = {"0": "dconv_2x2_0", "2": "dconv_2x2_1"}.get(m.group(3), part)
    else:
        name = "dconv_2x2" if m.group(3) == "0" else part
    return f"{target}{level}.{name}.{rest}"


def is_hf_layout(keys) -> bool:
    """True for a `Sam3VideoModel` or bare `Sam3Model` state dict."""
    keys = list(keys)
    return any(k.startswith(("detector_model.", "tracker_model.", "tracker_neck."))
               or k.startswith("vision_encoder.backbone.") for k in keys)


def split_layout(sd: dict) -> tuple[dict, dict, dict]:
    """(detector, tracker, tracker_neck) parts of a transformers state dict, prefixes removed."""
    parts = {"detector_model.": {}, "tracker_model.": {}, "tracker_neck.": {}}
    for key, value in sd.items():
        for prefix, part in parts.items():
            if key.startswith(prefix):
                key = key[len(prefix):]
                # transformers 5.23's save_pretrained writes the tracker of a Sam3VideoModel
                # as tracker_model.tracker_model.* (its base_model_prefix added again)
                if key.startswith(prefix):
                    key = key[len(prefix):]
                part[key] = value
                break
        else:  # a file saved from Sam3Model alone
            parts["detector_model."][key] = value
    return parts["detector_model."], parts["tracker_model."], parts["tracker_neck."]


def hf_to_official(sd: dict, model) -> dict:
    """Official image-model state dict from a transformers `Sam3VideoModel` state dict
    (see the module docstring). Keys that match no rule keep their (foreign) names, so
    the strict check that follows reports them as unexpected."""
    import torch

    det, trk, neck = split_layout(sd)
    expected = model.state_dict()
    out = {}

    for key, value in _fuse_qkv(det).items():
        if key.startswith("vision_encoder.neck."):
            new = _neck(key[len("vision_encoder.neck."):], "backbone.vision_backbone.convs.")
        else:
            new = _apply(_LAYER_RULES, _apply(_DETECTOR_RULES, key))
        if new == "backbone.language_backbone.encoder.text_projection":
            value = value.t()  # nn.Linear weight [out, in] vs the official [in, out] matrix
        elif new == "backbone.vision_backbone.trunk.pos_embed":
            value = torch.cat([torch.zeros_like(value[:, :1]), value], dim=1)
        out[new] = value
    for key, value in neck.items():
        out[_neck(key, "backbone.vision_backbone.sam2_convs.")] = value

    trk = _feedforward(trk, r"object_pointer_proj|mask_decoder\.(?:output_hypernetworks_mlps\.\d+"
                            r"|iou_prediction_head|pred_obj_score_head)")
    gaussian = [trk.pop(k) for k in ("shared_image_embedding.positional_embedding",
                                     "prompt_encoder.shared_embedding.positional_embedding") if k in trk]
    if gaussian:
        if len(gaussian) == 2 and not gaussian[0].is_meta and not torch.equal(gaussian[0], gaussian[1]):
            raise Sam3TvmError("tracker_model: shared_image_embedding and prompt_encoder.shared_embedding "
                               "differ; the official model has one positional encoding for both")
        out[TRACKER + "sam_prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"] = gaussian[0]
    point_embed = trk.pop("prompt_encoder.point_embed.weight", None)
    if point_embed is not None:
        for i in range(point_embed.shape[0]):
            out[f"{TRACKER}sam_prompt_encoder.point_embeddings.{i}.weight"] = point_embed[i:i + 1]
    downsampler_layers = {int(m.group(1)) for k in trk
                          if (m := re.match(r"^memory_encoder\.mask_downsampler\.layers\.(\d+)\.", k))}
    for key, value in trk.items():
        if key.startswith("memory_encoder.mask_downsampler.final_conv."):
            new = (f"maskmem_backbone.mask_downsampler.encoder.{3 * len(downsampler_layers)}."
                   + key.rsplit(".", 1)[1])
        else:
            new = _apply(_TRACKER_RULES, key)
        out[TRACKER + new] = value

    # tensors the layout does not carry (FILLED says why each is exact)
    for key, value in expected.items():
        if key in out:
            continue
        if key.endswith("attn.freqs_cis") or (key.startswith("geometry_encoder.points_")):
            out[key] = value.clone() if key.endswith("freqs_cis") else torch.zeros_like(value)
    # dtypes: a bf16/fp16 file loads into the fp32 model
    for key, value in out.items():
        if key in expected and value.is_floating_point() and value.dtype != expected[key].dtype:
            out[key] = value.to(expected[key].dtype)
    return out


def read_safetensors(path: str) -> dict:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not os.path.isfile(path):
        raise Sam3TvmError(f"checkpoint not found: {path}")
    try:
        return load_file(path, device="cpu")
    except (SafetensorError, OSError, ValueError) as e:
        raise Sam3TvmError(f"cannot read safetensors checkpoint {path}: {e}") from None


def load_hf_checkpoint(model, path: str) -> None:
    """Map a transformers checkpoint onto `model`, check it strictly, load it."""
    from sam3_tvm.model.checkpoint import check_keys

    sd = read_safetensors(path)
    if not is_hf_layout(sd):
        raise Sam3TvmError(f"{path}: not a transformers SAM 3 checkpoint (no detector_model.*, "
                           "tracker_model.* or vision_encoder.* keys)")
    det, trk, _ = split_layout(sd)
    if not trk:
        raise Sam3TvmError(
            f"{path} holds only the detector (a transformers Sam3Model file): the bundle also "
            "needs the tracker (clicks, video). Use the Sam3VideoModel-layout file with "
            "detector_model.*, tracker_model.* and tracker_neck.* keys (facebook/sam3's "
            "model.safetensors)")
    mapped = hf_to_official(sd, model)
    del sd, det, trk
    try:
        check_keys(model, mapped, path)
    except Sam3TvmError as e:
        raise Sam3TvmError(f"{e}\n  (names as in the official model, after mapping the transformers "
                           "names: docs/checkpoints.md)") from None
    model.load_state_dict(mapped, strict=True)
