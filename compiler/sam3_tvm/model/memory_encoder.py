"""The tracker's memory encoder: a frame's features and its mask -> one spatial memory.

Mirrors `Sam3TrackerBase._encode_new_memory` from the point where the mask has been
turned into `mask_for_mem` (sigmoid, or > 0 for masks from clicks, then x20 - 10) and
resized to the downsampler's `interpol_size` (1152 full, 384 tiny; bilinear with
antialias). Those steps are element-wise or a resize and run on the host, where the
runtime already has the masks (`docs/design.md`). Then: `SimpleMaskEncoder` (mask
downsampler, `pix_feat_proj`, fuser, `out_proj`) and the `no_obj_embed_spatial` added
where the object score is <= 0. The memory's position encoding is input-independent;
the memory attention computes it itself.
"""

from __future__ import annotations

from torch import nn


class MemoryEncoder(nn.Module):
    """pix_feat [1,C,G,G] (tracker neck's lowest level, no memory), mask [1,1,4M,4M]
    (`mask_for_mem` at interpol size), object_score [1,1] -> memory [1,Cm,G,G]."""

    def __init__(self, model):
        super().__init__()
        trk = model.inst_interactive_predictor.model
        self.maskmem_backbone = trk.maskmem_backbone
        self.no_obj_embed_spatial = trk.no_obj_embed_spatial

    def forward(self, pix_feat, mask, object_score):
        out = self.maskmem_backbone(pix_feat, mask, skip_mask_sigmoid=True)
        features = out["vision_features"]
        is_obj_appearing = (object_score > 0).float()
        return features + (1 - is_obj_appearing[..., None, None]) * self.no_obj_embed_spatial[
            ..., None, None].expand(*features.shape)
