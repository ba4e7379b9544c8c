import pytest
import torch

from sam3_tvm.model.checkpoint import synthesize_checkpoint
from sam3_tvm.errors import Sam3TvmError
from sam3_tvm.model.builder import build_model


@pytest.fixture(scope="module")
def ckpt(tiny_model, tmp_path_factory):
    path = str(tmp_path_factory.mktemp("ckpt") / "sam3.pt")
    synthesize_checkpoint(tiny_model, path)
    return path


def test_synthesized_checkpoint_has_the_official_layout(ckpt):
    data = torch.load(ckpt, map_location="cpu", weights_only=True)
    keys = list(data["model"])
    assert all(k.startswith(("detector.", "tracker.")) for k in keys)
    assert "detector.backbone.vision_backbone.trunk.blocks.0.attn.freqs_cis" in keys
    assert data["model"]["detector.backbone.vision_backbone.trunk.blocks.0.attn.freqs_cis"].is_complex()
    assert any(k.startswith("tracker.sam_mask_decoder.") for k in keys)
    assert any(k.startswith("detector.backbone.vision_backbone.sam2_convs.") for k in keys)


def test_checkpoint_loads_through_the_official_loader(tiny_model, ckpt):
    loaded = build_model("tiny", checkpoint=ckpt, seed=123)  # a different random init, overwritten
    ref = tiny_model.state_dict()
    got = loaded.state_dict()
    assert ref.keys() == got.keys()
    for k in ref:
        assert torch.equal(ref[k], got[k]), k


def _edit(ckpt, tmp_path, fn):
    data = torch.load(ckpt, map_location="cpu", weights_only=True)
    fn(data["model"])
    path = str(tmp_path / "edited.pt")
    torch.save(data, path)
    return path


def test_missing_key_fails(ckpt, tmp_path):
    path = _edit(ckpt, tmp_path, lambda m: m.pop("detector.transformer.decoder.presence_token.weight"))
    with pytest.raises(Sam3TvmError, match=r"1 missing keys:\n.*presence_token.weight"):
        build_model("tiny", checkpoint=path)


def test_unexpected_key_fails(ckpt, tmp_path):
    path = _edit(ckpt, tmp_path, lambda m: m.__setitem__("detector.not_a_module.weight", torch.zeros(1)))
    with pytest.raises(Sam3TvmError, match=r"1 unexpected keys:\n.*not_a_module"):
        build_model("tiny", checkpoint=path)


def test_shape_mismatch_fails(ckpt, tmp_path):
    key = "detector.dot_prod_scoring.hs_proj.weight"
    path = _edit(ckpt, tmp_path, lambda m: m.__setitem__(key, torch.zeros(3, 3)))
    with pytest.raises(Sam3TvmError, match=r"shape mismatches:\n.*hs_proj.weight: checkpoint \(3, 3\)"):
        build_model("tiny", checkpoint=path)


def test_full_checkpoint_does_not_fit_tiny(tmp_path):
    """A checkpoint from another config is refused with a clear message."""
    small = build_model("tiny")
    sd = small.state_dict()
    sd["transformer.decoder.query_embed.weight"] = torch.zeros(200, 256)
    torch.save({"model": {"detector." + k: v for k, v in sd.items()
                          if not k.startswith("inst_interactive_predictor.")}}, tmp_path / "x.pt")
    with pytest.raises(Sam3TvmError, match="does not match the model"):
        build_model("tiny", checkpoint=str(tmp_path / "x.pt"))


def test_corrupt_checkpoint(tmp_path):
    p = tmp_path / "bad.pt"
    p.write_bytes(b"not a checkpoint")
    with pytest.raises(Sam3TvmError, match="cannot read checkpoint"):
        build_model("tiny", checkpoint=str(p))
