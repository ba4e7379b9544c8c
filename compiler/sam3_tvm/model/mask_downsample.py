"""The tracker's `mask_downsample` conv: an input mask at 4x the low-res mask size ->
a low-res mask prompt for the SAM heads (`Sam3TrackerBase._use_mask_as_output`, which
`add_new_mask` uses to make an object pointer from a user or detector mask)."""

from __future__ import annotations

from torch import nn


class MaskDownsample(nn.Module):
    """mask [1,1,4M,4M] (0/1 as float) -> mask prompt [1,1,M,M]."""

    def __init__(self, model):
        super().__init__()
        self.conv = model.inst_interactive_predictor.model.mask_downsample

    def forward(self, mask):
        return self.conv(mask)
