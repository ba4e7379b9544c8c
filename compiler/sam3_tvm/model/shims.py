"""Make the official `sam3` package importable and constructible on a CPU-only host.

Each shim or patch below is one small unit, applied once by `apply()`; the
docstring of each says what it works around. Nothing here changes the maths of
inference: the parity tests compare against the official modules after these
patches, and the patches only touch device placement and import-time needs.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types

_APPLIED: list[str] = []


def _stub_edt() -> None:
    """`sam3.model.edt` does `import triton` at import time (via
    `sam3_tracker_utils`, imported by `import sam3`). Its Euclidean distance
    transform kernel only serves training-time click sampling, never inference.
    When Triton is absent (our CPU venv does not install it), register a stub
    `sam3.model.edt` whose `edt_triton` raises a clear error if ever called.
    Triton itself is not faked: torch inspects it and must see it missing."""
    if importlib.util.find_spec("triton") is not None or "sam3.model.edt" in sys.modules:
        return

    def edt_triton(*_a, **_k):
        raise RuntimeError("sam3.model.edt.edt_triton needs Triton, which this "
                           "CPU build does not install; inference never calls it")

    mod = types.ModuleType("sam3.model.edt")
    mod.edt_triton = edt_triton
    mod.__sam3_tvm_stub__ = True
    sys.modules["sam3.model.edt"] = mod
    _APPLIED.append("stub sam3.model.edt (Triton EDT)")


def _patch_position_encoding() -> None:
    """`PositionEmbeddingSine(precompute_resolution=...)` allocates on "cuda" in
    `__init__` (upstream issue #587). Precompute on the CPU instead."""
    import torch
    from sam3.model import position_encoding as pe

    if getattr(pe.PositionEmbeddingSine.__init__, "_sam3_tvm", False):
        return
    orig = pe.PositionEmbeddingSine.__init__

    def __init__(self, num_pos_feats, temperature=10000, normalize=True, scale=None,
                 precompute_resolution=None):
        orig(self, num_pos_feats, temperature, normalize, scale, None)
        if precompute_resolution is not None:
            for d in (4, 8, 16, 32):
                size = (precompute_resolution // d, precompute_resolution // d)
                self.forward(torch.zeros((1, 1) + size))
                self.cache[size] = self.cache[size].clone().detach()

    __init__._sam3_tvm = True
    pe.PositionEmbeddingSine.__init__ = __init__
    _APPLIED.append("PositionEmbeddingSine on cpu")


def _patch_decoder_coords() -> None:
    """`TransformerDecoder.__init__` builds its boxRPB coordinate cache with
    `device="cuda"` (upstream issues #550, #406); build it on the CPU when CUDA
    is unavailable. Also make `_get_rpb_matrix` use the cached static feature
    size, so torch.export does not need a data-dependent tensor comparison."""
    import torch
    from sam3.model import decoder as dec

    cls = dec.TransformerDecoder
    if getattr(cls._get_rpb_matrix, "_sam3_tvm", False):
        return
    orig_coords = cls._get_coords

    def _get_coords(H, W, device):
        if str(device).startswith("cuda") and not torch.cuda.is_available():
            device = "cpu"
        return orig_coords(H, W, device)

    orig_rpb = cls._get_rpb_matrix

    def _get_rpb_matrix(self, reference_boxes, feat_size):
        if self.compilable_stored_size is not None and isinstance(feat_size[0], torch.Tensor):
            feat_size = self.compilable_stored_size
        return orig_rpb(self, reference_boxes, feat_size)

    _get_rpb_matrix._sam3_tvm = True
    cls._get_coords = staticmethod(_get_coords)
    cls._get_rpb_matrix = _get_rpb_matrix
    _APPLIED.append("TransformerDecoder coords on cpu, static feat size")


def _patch_tracker_autocast() -> None:
    """`Sam3TrackerPredictor.__init__` enters a CUDA bf16 autocast context and
    never leaves it; leave it right away so the CPU model stays fp32."""
    from sam3.model import sam3_tracking_predictor as tp

    cls = tp.Sam3TrackerPredictor
    if getattr(cls.__init__, "_sam3_tvm", False):
        return
    orig = cls.__init__

    def __init__(self, *a, **k):
        orig(self, *a, **k)
        ctx = getattr(self, "bf16_context", None)
        if ctx is not None:
            ctx.__exit__(None, None, None)
            self.bf16_context = None

    __init__._sam3_tvm = True
    cls.__init__ = __init__
    _APPLIED.append("tracker bf16 autocast exited")


def _patch_pin_memory() -> None:
    """`SequenceGeometryEncoder._encode_boxes` calls `.pin_memory()`, which needs a
    CUDA allocator; on a CPU-only build make `Tensor.pin_memory` a no-op."""
    import torch

    if torch.cuda.is_available() or getattr(torch.Tensor.pin_memory, "_sam3_tvm", False):
        return

    def pin_memory(self, *a, **k):
        return self

    pin_memory._sam3_tvm = True
    torch.Tensor.pin_memory = pin_memory
    _APPLIED.append("Tensor.pin_memory no-op")


def apply() -> list[str]:
    """Apply every shim/patch (idempotent); return the list applied so far."""
    import torch  # noqa: F401  (torch must be imported before the stub)

    _stub_edt()
    importlib.import_module("sam3")
    _patch_position_encoding()
    _patch_decoder_coords()
    _patch_tracker_autocast()
    _patch_pin_memory()
    return list(_APPLIED)
