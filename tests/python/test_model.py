import re

import pytest
import torch

from sam3_tvm.model import shims
from sam3_tvm.errors import Sam3TvmError
from sam3_tvm.model.builder import CONFIGS, build_model


def test_shims_make_sam3_importable_without_triton():
    applied = shims.apply()
    import importlib.util

    assert importlib.util.find_spec("triton") is None  # the venv really has no Triton
    assert "stub sam3.model.edt (Triton EDT)" in applied
    import sam3.model.edt as edt

    with pytest.raises(RuntimeError, match="Triton"):
        edt.edt_triton(torch.zeros(1, 4, 4))


def test_tiny_build_is_seeded_and_finite(tiny_model):
    again = build_model("tiny", seed=0)
    other = build_model("tiny", seed=1)
    a, b, c = tiny_model.state_dict(), again.state_dict(), other.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a if a[k].is_floating_point())
    for k, v in a.items():
        if v.is_floating_point() and not k.endswith("attn_mask"):
            assert torch.isfinite(v).all(), k


def test_tiny_uses_the_official_classes_and_wiring(tiny_model):
    from sam3.model.sam3_image import Sam3Image
    from sam3.model.vitdet import ViT

    assert type(tiny_model) is Sam3Image
    assert isinstance(tiny_model.backbone.vision_backbone.trunk, ViT)
    assert tiny_model.inst_interactive_predictor is not None
    assert tiny_model.backbone.vision_backbone.trunk.patch_embed.proj.weight.shape == (64, 3, 14, 14)
    assert tiny_model.transformer.decoder.num_queries == CONFIGS["tiny"].num_queries


def test_full_and_tiny_have_the_same_structure(tiny_model):
    """Same state-dict names once layer indices are collapsed: tiny only shrinks sizes."""
    full = build_model("full")
    assert sum(p.numel() for p in full.parameters()) == 860_055_224  # official video-model count
    collapse = lambda keys: {re.sub(r"\.\d+\.", ".#.", k) for k in keys}  # noqa: E731
    assert collapse(full.state_dict()) == collapse(tiny_model.state_dict())


def test_unknown_config_and_missing_checkpoint():
    with pytest.raises(Sam3TvmError, match="unknown config"):
        build_model("huge")
    with pytest.raises(Sam3TvmError, match="checkpoint not found"):
        build_model("tiny", checkpoint="/nonexistent/sam3.pt")
