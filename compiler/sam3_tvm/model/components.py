"""The four exported components: thin nn.Module wrappers around the official modules.

Each wrapper has a fixed signature (see `signature()`), so torch.export and TVM
see static shapes, except the interactive decoder's point count, which is a
symbolic dimension (SAM's two-way transformer has no padding mask, so padded
points would change the answer). Box prompts for the grounding head come in a
fixed bucket of `MAX_BOXES` with a padding mask; padded boxes are masked out
by the official attention masks and pooling, so the answer does not change.

Every wrapper calls the official code for the maths; the only logic here is
argument plumbing, mirrored from the official call sites named in comments.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

MAX_BOXES = 4       # exemplar boxes per grounding call (padding-masked bucket)
MAX_POINTS = 16     # interactive prompt points (box corners count as 2)


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple       # ints; a str is a symbolic dim
    dtype: str


class ImageEncoder(nn.Module):
    """image [1,3,S,S] (normalised) -> detector FPN (3 levels) + tracker features.

    Mirrors `Sam3Processor.set_image`: `backbone.forward_image`, then the SAM
    mask decoder's `conv_s0`/`conv_s1` applied to the tracker neck's two
    high-resolution levels."""

    def __init__(self, model):
        super().__init__()
        self.backbone = model.backbone
        self.mask_decoder = model.inst_interactive_predictor.model.sam_mask_decoder

    def forward(self, image):
        out = self.backbone.forward_image(image)
        fpn = out["backbone_fpn"]
        trk = out["sam2_backbone_out"]["backbone_fpn"]
        return (fpn[0], fpn[1], fpn[2],
                self.mask_decoder.conv_s0(trk[0]), self.mask_decoder.conv_s1(trk[1]), trk[2])


class TextEncoder(nn.Module):
    """token ids [T,32] int64 -> text features [32,T,D] and padding mask [T,32] (True = pad).

    Mirrors `VETextEncoder.forward` after tokenisation."""

    def __init__(self, model):
        super().__init__()
        self.text = model.backbone.language_backbone

    def forward(self, ids):
        _, memory = self.text.encoder(ids)
        feats = self.text.resizer(memory.transpose(0, 1))
        return feats, ids == 0


class GroundingHead(nn.Module):
    """Image features + prompt -> detections (one image, one prompt).

    Inputs: the three detector FPN levels, text features/mask from TextEncoder,
    exemplar boxes [MAX_BOXES,1,4] normalised cxcywh, labels [MAX_BOXES,1]
    int64 (1 = positive, 0 = negative), box padding mask [1,MAX_BOXES]
    (True = unused slot). Calls `Sam3Image.forward_grounding` as
    `Sam3Processor._forward_grounding` does."""

    def __init__(self, model):
        super().__init__()
        from sam3.model.data_misc import FindStage

        # forward_grounding needs no backbone when features are given; a shallow
        # copy without it (and without the tracker) keeps their weights out of
        # this component's parameter list.
        head = copy.copy(model)
        head._modules = dict(model._modules)
        head._modules["backbone"] = nn.Module()
        head._modules["inst_interactive_predictor"] = None
        self.model = head
        self.pos_enc = model.backbone.vision_backbone.position_encoding
        self.find_input = FindStage(
            img_ids=torch.tensor([0], dtype=torch.long), text_ids=torch.tensor([0], dtype=torch.long),
            input_boxes=None, input_boxes_mask=None, input_boxes_label=None,
            input_points=None, input_points_mask=None)

    def forward(self, fpn0, fpn1, fpn2, text_feats, text_mask, boxes, box_labels, box_mask):
        from sam3.model.geometry_encoders import Prompt

        fpn = [fpn0, fpn1, fpn2]
        backbone_out = {
            "backbone_fpn": fpn,
            "vision_pos_enc": [self.pos_enc(f).to(f.dtype) for f in fpn],
            "language_features": text_feats,
            "language_mask": text_mask,
        }
        prompt = Prompt(box_embeddings=boxes, box_mask=box_mask, box_labels=box_labels)
        out = self.model.forward_grounding(backbone_out=backbone_out, find_input=self.find_input,
                                           find_target=None, geometric_prompt=prompt)
        return (out["pred_logits"][..., 0], out["pred_boxes"], out["presence_logit_dec"],
                out["pred_masks"], out["semantic_seg"])


class InteractiveDecoder(nn.Module):
    """SAM prompt encoder + mask decoder + object pointer: the SAM heads of the image
    interactive path and of the video tracker (`Sam3TrackerBase._forward_sam_heads`).

    Inputs: image features [1,C,G,G] (tracker neck, or memory-conditioned in video),
    `add_no_mem_embed` [1] (1: add `no_mem_embed` first, as `predict_inst` and the
    tracker on frames without memory do; 0: features used as given), the two
    high-resolution tracker levels, point coords [1,N,2] in input-resolution pixels (a
    box is two points with labels 2, 3, first; the tracker without points passes one
    point with label -1), labels [1,N] int32, a mask prompt [1,1,M,M] and has_mask [1].
    Outputs all four mask logits [1,4,M,M] (0 = single-mask output, 1..3 = multimask),
    IoU predictions [1,4], the object score logit [1,1], the object pointer of each of
    the four output tokens [1,4,C] (`obj_ptr_proj`, replaced by `no_obj_ptr` when the
    object score is <= 0) and `no_obj_ptr` [1,C] itself (for masks given as output, whose
    pointer is `no_obj_ptr` when the mask is empty). The runtime picks masks and tokens as
    `MaskDecoder.forward` and `_forward_sam_heads` do."""

    def __init__(self, model):
        super().__init__()
        tracker = model.inst_interactive_predictor.model
        self.prompt_encoder = tracker.sam_prompt_encoder
        self.mask_decoder = tracker.sam_mask_decoder
        self.no_mem_embed = tracker.no_mem_embed
        self.obj_ptr_proj = tracker.obj_ptr_proj
        self.no_obj_ptr = tracker.no_obj_ptr

    def forward(self, image_embed, hr0, hr1, point_coords, point_labels, mask_input, has_mask,
                add_no_mem_embed):
        c = image_embed.shape[1]
        embed = image_embed + add_no_mem_embed.view(1, 1, 1, 1) * self.no_mem_embed.view(1, c, 1, 1)
        points = (point_coords, point_labels)
        sparse, dense_none = self.prompt_encoder(points=points, boxes=None, masks=None)
        _, dense_mask = self.prompt_encoder(points=points, boxes=None, masks=mask_input)
        dense = torch.where(has_mask.view(1, 1, 1, 1) > 0.5, dense_mask, dense_none)
        masks, iou, tokens, obj = self.mask_decoder.predict_masks(
            image_embeddings=embed, image_pe=self.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
            repeat_image=False, high_res_features=[hr0, hr1])
        # _forward_sam_heads: lambda * obj_ptr + (1 - lambda) * no_obj_ptr, lambda in {0, 1}
        lam = (obj > 0).float().view(1, 1, 1)
        ptr = lam * self.obj_ptr_proj(tokens)
        ptr = ptr + (1 - lam) * self.no_obj_ptr
        return masks, iou, obj, ptr, self.no_obj_ptr + 0


IMAGE_COMPONENTS = ("image_encoder", "text_encoder", "grounding_head", "interactive_decoder")
# the video tracker's own modules (it also uses image_encoder and interactive_decoder)
VIDEO_COMPONENTS = ("memory_encoder", "memory_attention", "mask_downsample")
COMPONENTS = IMAGE_COMPONENTS + VIDEO_COMPONENTS
# symbolic dimensions: name -> (min, max(cfg))
DIMS = {"num_points": (1, lambda cfg: MAX_POINTS), "num_mem": (1, lambda cfg: cfg.max_memories)}


def signature(component: str, cfg) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """Input and output specs of a component for a config (the bundle contract)."""
    S, D, G, Q, L = cfg.image_size, cfg.d_model, cfg.grid, cfg.num_queries, cfg.context_length
    M = cfg.mask_size
    f32, i64, i32, b = "float32", "int64", "int32", "bool"
    fpn = [TensorSpec("fpn0", (1, D, 4 * G, 4 * G), f32), TensorSpec("fpn1", (1, D, 2 * G, 2 * G), f32),
           TensorSpec("fpn2", (1, D, G, G), f32)]
    trk = [TensorSpec("trk_hr0", (1, D // 8, 4 * G, 4 * G), f32),
           TensorSpec("trk_hr1", (1, D // 4, 2 * G, 2 * G), f32),
           TensorSpec("trk_embed", (1, D, G, G), f32)]
    if component == "image_encoder":
        return [TensorSpec("image", (1, 3, S, S), f32)], fpn + trk
    if component == "text_encoder":
        return ([TensorSpec("token_ids", (1, L), i64)],
                [TensorSpec("text_feats", (L, 1, D), f32), TensorSpec("text_mask", (1, L), b)])
    if component == "grounding_head":
        return (fpn + [TensorSpec("text_feats", (L, 1, D), f32), TensorSpec("text_mask", (1, L), b),
                       TensorSpec("boxes", (MAX_BOXES, 1, 4), f32),
                       TensorSpec("box_labels", (MAX_BOXES, 1), i64),
                       TensorSpec("box_mask", (1, MAX_BOXES), b)],
                [TensorSpec("pred_logits", (1, Q), f32), TensorSpec("pred_boxes", (1, Q, 4), f32),
                 TensorSpec("presence_logit", (1, 1), f32), TensorSpec("pred_masks", (1, Q, M, M), f32),
                 TensorSpec("semantic_seg", (1, 1, M, M), f32)])
    if component == "interactive_decoder":
        return ([trk[2], trk[0], trk[1],
                 TensorSpec("point_coords", (1, "num_points", 2), f32),
                 TensorSpec("point_labels", (1, "num_points"), i32),
                 TensorSpec("mask_input", (1, 1, M, M), f32), TensorSpec("has_mask", (1,), f32),
                 TensorSpec("add_no_mem_embed", (1,), f32)],
                [TensorSpec("masks", (1, 4, M, M), f32), TensorSpec("iou", (1, 4), f32),
                 TensorSpec("object_score", (1, 1), f32), TensorSpec("obj_ptr", (1, 4, D), f32),
                 TensorSpec("no_obj_ptr", (1, D), f32)])
    Cm, MI = cfg.mem_dim, cfg.input_mask_size
    if component == "memory_encoder":
        return ([trk[2], TensorSpec("mask_for_mem", (1, 1, MI, MI), f32),
                 TensorSpec("object_score", (1, 1), f32)],
                [TensorSpec("memory", (1, Cm, G, G), f32)])
    if component == "memory_attention":
        P = cfg.pointer_slots
        return ([trk[2], TensorSpec("memory", ("num_mem", Cm, G, G), f32),
                 TensorSpec("memory_tpos", ("num_mem",), i64),
                 TensorSpec("ptrs", (P, D), f32), TensorSpec("ptr_pos", (P,), f32),
                 TensorSpec("ptr_valid", (P,), f32)],
                [TensorSpec("pix_feat_with_mem", (1, D, G, G), f32)])
    if component == "mask_downsample":
        return ([TensorSpec("mask", (1, 1, MI, MI), f32)], [TensorSpec("mask_prompt", (1, 1, M, M), f32)])
    raise KeyError(component)


def make(component: str, model) -> nn.Module:
    from sam3_tvm.model.mask_downsample import MaskDownsample
    from sam3_tvm.model.memory_attention import MemoryAttention
    from sam3_tvm.model.memory_encoder import MemoryEncoder

    cls = {"image_encoder": ImageEncoder, "text_encoder": TextEncoder,
           "grounding_head": GroundingHead, "interactive_decoder": InteractiveDecoder,
           "memory_encoder": MemoryEncoder, "memory_attention": MemoryAttention,
           "mask_downsample": MaskDownsample}[component]
    return cls(model).eval()


def symbolic_dims(component: str, cfg) -> dict:
    """{dim name: (min, max)} of the component's symbolic dimensions."""
    ins, _ = signature(component, cfg)
    names = {d for s in ins for d in s.shape if isinstance(d, str)}
    return {n: (DIMS[n][0], DIMS[n][1](cfg)) for n in sorted(names)}


def example_inputs(component: str, cfg, seed: int = 0, num_points: int = 3,
                   num_mem: int = 3, num_ptrs: int = 5) -> list[torch.Tensor]:
    """Seeded example inputs matching `signature()` (used by export and verify).
    `num_ptrs` of the `max_pointers` pointer slots are marked valid."""
    g = torch.Generator().manual_seed(seed)
    ins, _ = signature(component, cfg)
    sizes = {"num_points": num_points, "num_mem": num_mem}
    out = []
    for spec in ins:
        shape = tuple(sizes[d] if isinstance(d, str) else d for d in spec.shape)
        if spec.name == "token_ids":
            t = torch.zeros(shape, dtype=torch.int64)
            n = 7
            t[0, 0] = 49406
            t[0, 1:n - 1] = torch.randint(1, 49406, (n - 2,), generator=g)
            t[0, n - 1] = 49407
        elif spec.name == "text_mask":
            t = torch.ones(shape, dtype=torch.bool)
            t[0, :7] = False
        elif spec.name == "boxes":
            cxcy = 0.25 + 0.5 * torch.rand(shape[:-1] + (2,), generator=g)
            wh = 0.1 + 0.3 * torch.rand(shape[:-1] + (2,), generator=g)
            t = torch.cat([cxcy, wh], -1)
        elif spec.name == "box_labels":
            t = torch.tensor([[1], [0], [1], [1]], dtype=torch.int64)[: shape[0]]
        elif spec.name == "box_mask":
            t = torch.tensor([[False, False, True, True]])[:, : shape[1]]
        elif spec.name == "point_coords":
            t = torch.rand(shape, generator=g) * cfg.image_size
        elif spec.name == "point_labels":
            t = torch.tensor([[1, 0, 1] * ((shape[1] + 2) // 3)], dtype=torch.int32)[:, : shape[1]]
        elif spec.name in ("has_mask", "add_no_mem_embed"):
            t = torch.ones(shape)
        elif spec.name == "image":
            t = torch.rand(shape, generator=g) * 2 - 1
        elif spec.name in ("mask_for_mem", "mask"):  # sigmoid(x) * 20 - 10, x smooth logits
            t = torch.sigmoid(torch.randn(shape, generator=g) * 4) * 20 - 10
        elif spec.name == "memory_tpos":  # a conditioning frame, then recent slots
            t = torch.tensor([6, 0, 5, 4, 3, 2, 1, 6, 6, 6], dtype=torch.int64)[: shape[0]]
        elif spec.name == "memory":  # stored as bf16
            t = torch.randn(shape, generator=g).to(torch.bfloat16).float()
        elif spec.name == "ptr_pos":
            t = torch.arange(shape[0], dtype=torch.float32) / 15
        elif spec.name == "ptr_valid":
            t = (torch.arange(shape[0]) < num_ptrs).float()
        else:
            t = torch.randn(shape, generator=g)
        out.append(t)
    return out
