"""torch.export of each component at its fixed signature."""

from __future__ import annotations

import contextlib

import torch

from . import components as C


def export_component(name: str, model, cfg):
    """Return (`torch.export.ExportedProgram`, wrapper module) for component `name`."""
    wrapper = C.make(name, model)
    args = tuple(C.example_inputs(name, cfg))
    dynamic = None
    if name == "interactive_decoder":
        n = torch.export.Dim("num_points", min=1, max=C.MAX_POINTS)
        dynamic = {"image_embed": None, "hr0": None, "hr1": None,
                   "point_coords": {1: n}, "point_labels": {1: n},
                   "mask_input": None, "has_mask": None}
    with torch.no_grad(), _pos_enc_cache_kept(model):
        ep = torch.export.export(wrapper, args, dynamic_shapes=dynamic, strict=False)
    return ep, wrapper


@contextlib.contextmanager
def _pos_enc_cache_kept(model):
    """`PositionEmbeddingSine` memoises encodings in a dict; entries added while
    tracing would hold export-time fake tensors. Restore the caches afterwards."""
    from sam3.model.position_encoding import PositionEmbeddingSine

    saved = [(m, dict(m.cache)) for m in model.modules() if isinstance(m, PositionEmbeddingSine)]
    try:
        yield
    finally:
        for m, cache in saved:
            m.cache = cache
