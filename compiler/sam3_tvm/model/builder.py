"""Build the official SAM 3 image model (with the interactive SAM heads) on the CPU.

`full` is exactly `sam3.model_builder.build_sam3_image_model`. `tiny` runs the
same builder, with the same classes and wiring, but with small sizes
substituted into the constructors (see `TINY_OVERRIDES`), so tests run in
seconds while exercising the official code paths.
"""

from __future__ import annotations

import contextlib
import functools
import os
from dataclasses import dataclass

from sam3_tvm.model import shims
from sam3_tvm.errors import Sam3TvmError


@dataclass(frozen=True)
class Config:
    name: str
    image_size: int     # square input resolution
    patch_size: int
    d_model: int        # detector / tracker width
    text_width: int
    num_queries: int
    mem_dim: int        # tracker memory channels
    context_length: int = 32
    vocab_size: int = 49408
    # tracker memory bank bounds (model_builder.build_tracker: 4 conditioning frames in
    # attention + 6 recent memories; pointers: 4 conditioning + 15 recent);
    # build_model checks them against the built tracker
    max_memories: int = 10
    max_pointers: int = 19
    # pointer slots the memory attention is compiled with (>= max_pointers): 32 makes
    # the key count num_mem*G*G + 32*C/Cm a multiple of 64, so the score kernels tile
    # without bounds checks (lowering/schedule.py)
    pointer_slots: int = 32

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size

    @property
    def mask_size(self) -> int:  # the 4x FPN level, also the mask logit resolution
        return self.grid * 4

    @property
    def input_mask_size(self) -> int:  # tracker mask inputs and memory-encoder masks
        return self.mask_size * 4


CONFIGS = {
    "full": Config("full", 1008, 14, 256, 1024, 200, 64),
    "tiny": Config("tiny", 336, 14, 32, 64, 20, 16),
}

# Constructor keyword overrides for `tiny`, keyed by the class name as it is
# called from sam3.model_builder. Values are substituted only where the
# builder passes (or defaults) the full-size number.
TINY_OVERRIDES = {
    "ViT": dict(img_size=336, pretrain_img_size=168, embed_dim=64, depth=2, num_heads=2,
                global_att_blocks=(1,), window_size=12),
    "Sam3DualViTDetNeck": dict(d_model=32),
    "PositionEmbeddingSine": dict(num_pos_feats={256: 32, 64: 16},
                                  precompute_resolution={1008: 336}),
    "VETextEncoder": dict(d_model=32, width=64, heads=2, layers=2),
    "MultiheadAttention": dict(embed_dim=32),
    "TransformerEncoderLayer": dict(d_model=32, dim_feedforward=64),
    "TransformerEncoderFusion": dict(d_model=32, num_layers=2),
    "TransformerDecoderLayer": dict(d_model=32, dim_feedforward=64),
    "TransformerDecoder": dict(d_model=32, num_layers=2, num_queries=20, resolution=336),
    "MLP": dict(input_dim=32, hidden_dim=64, output_dim=32),
    "DotProductScoring": dict(d_model=32, d_proj=32),
    "PixelDecoder": dict(hidden_dim=32),
    "UniversalSegmentationHead": dict(hidden_dim=32),
    "CXBlock": dict(dim=32),
    "SequenceGeometryEncoder": dict(d_model=32, num_layers=1),
    "SimpleMaskDownSampler": dict(embed_dim=32, interpol_size=[384, 384]),
    "SimpleMaskEncoder": dict(out_dim=16, in_dim=32),
    "RoPEAttention": dict(embedding_dim=32, kv_in_dim={64: 16}, feat_sizes=[24, 24]),
    "TransformerDecoderLayerv2": dict(d_model=32, dim_feedforward=64),
    "TransformerEncoderCrossAttention": dict(d_model=32, num_layers=1),
    "TransformerWrapper": dict(d_model=32),
    "Sam3TrackerPredictor": dict(image_size=336),
}


def bpe_vocab_path() -> str:
    """The CLIP BPE vocabulary SAM 3 uses (`bpe_simple_vocab_16e6.txt.gz`).

    The `sam3` wheel on PyPI omits its `assets/` folder, so we take the same
    file from the `open_clip_torch` wheel (MIT licence)."""
    import open_clip

    path = os.path.join(os.path.dirname(open_clip.__file__), "bpe_simple_vocab_16e6.txt.gz")
    if not os.path.exists(path):
        raise Sam3TvmError(f"CLIP BPE vocabulary not found at {path}")
    return path


def _override(cls, overrides):
    @functools.wraps(cls, updated=())
    def make(*args, **kwargs):
        for key, value in overrides.items():
            if isinstance(value, dict):  # substitute only the listed full-size values
                if key in kwargs and kwargs[key] in value:
                    kwargs[key] = value[kwargs[key]]
            else:
                kwargs[key] = value
        obj = cls(*args, **kwargs)
        return obj
    return make


@contextlib.contextmanager
def _tiny_builder():
    import torch.nn as nn
    from sam3 import model_builder as mb

    saved = {}
    try:
        for name, overrides in TINY_OVERRIDES.items():
            saved[name] = getattr(mb, name)
            setattr(mb, name, _override(saved[name], overrides))
        # the dot-product scorer's out_norm is built as nn.LayerNorm(256) inline
        saved["nn"] = mb.nn
        mb.nn = type("nn_proxy", (), {"LayerNorm": staticmethod(
            lambda n, *a, **k: nn.LayerNorm(32 if n == 256 else n, *a, **k))})
        yield
    finally:
        for name, obj in saved.items():
            setattr(mb, name, obj)


def _init_uninitialised(model, seed: int) -> None:
    """The official text encoder allocates `positional_embedding` and
    `text_projection` with `torch.empty` and never initialises them (upstream
    relies on the checkpoint). Give them seeded values (OpenCLIP's init) so a
    random-weight model is deterministic and finite."""
    import torch

    g = torch.Generator().manual_seed(seed + 1)
    enc = model.backbone.language_backbone.encoder
    with torch.no_grad():
        pe = enc.positional_embedding
        pe.copy_(torch.randn(pe.shape, generator=g) * 0.01)
        tp = enc.text_projection
        tp.copy_(torch.randn(tp.shape, generator=g) * tp.shape[0] ** -0.5)
    for name, t in list(model.named_parameters()) + list(model.named_buffers()):
        if t.is_floating_point() and not torch.isfinite(t).all() and not name.endswith("attn_mask"):
            raise Sam3TvmError(f"non-finite values in {name} after init")


def build_model(config: str = "tiny", checkpoint: str | None = None, seed: int = 0):
    """Build the official `Sam3Image` (+ interactive predictor), eval mode, CPU, fp32.

    Weights: seeded random init, or `checkpoint`: the official `sam3.pt` layout, loaded
    through the official loader, or a transformers `model.safetensors`, mapped to the
    official names; both after a strict key and shape check.
    """
    if config not in CONFIGS:
        raise Sam3TvmError(f"unknown config {config!r}; choose one of {sorted(CONFIGS)}")
    if checkpoint is not None and not os.path.isfile(checkpoint):
        raise Sam3TvmError(f"checkpoint not found: {checkpoint}")
    shims.apply()
    import torch
    from sam3.model_builder import build_sam3_image_model

    torch.manual_seed(seed)
    ctx = _tiny_builder() if config == "tiny" else contextlib.nullcontext()
    with ctx:
        model = build_sam3_image_model(bpe_path=bpe_vocab_path(), device="cpu",
                                       eval_mode=True, checkpoint_path=None,
                                       load_from_HF=False, enable_inst_interactivity=True)
    if config == "tiny":
        # SAM3InteractiveImagePredictor hard-codes the 1008-input feature sizes
        g = CONFIGS[config].grid
        model.inst_interactive_predictor._bb_feat_sizes = [(4 * g, 4 * g), (2 * g, 2 * g), (g, g)]
    _init_uninitialised(model, seed)
    if checkpoint is not None:
        from sam3_tvm.model.checkpoint import is_safetensors, load_checkpoint
        if is_safetensors(checkpoint):  # the transformers layout (model/hf_checkpoint.py)
            from sam3_tvm.model.hf_checkpoint import load_hf_checkpoint
            load_hf_checkpoint(model, checkpoint)
        else:
            load_checkpoint(model, checkpoint)
    model.eval()
    cfg = CONFIGS[config]
    from sam3_tvm.model.memory_attention import memory_limits

    tracker = model.inst_interactive_predictor.model
    if (tracker.mem_dim, *memory_limits(tracker)) != (cfg.mem_dim, cfg.max_memories, cfg.max_pointers):
        raise Sam3TvmError("the official tracker's memory sizes changed; update model.CONFIGS")
    model.sam3_tvm_config = cfg
    return model
