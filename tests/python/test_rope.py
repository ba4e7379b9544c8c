import torch

from sam3_tvm.model import rope


def test_rotate_pairs_equals_complex_multiplication():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 10, 8, generator=g)
    angles = torch.rand(10, 4, generator=g) * 6.28
    freqs = torch.polar(torch.ones_like(angles), angles)
    ref = torch.view_as_real(torch.view_as_complex(x.reshape(2, 3, 10, 4, 2)) * freqs).flatten(3)
    out = rope.rotate_pairs(x, freqs.real, freqs.imag)
    torch.testing.assert_close(out, ref, rtol=1e-6, atol=1e-6)


def test_realify_matches_the_official_vit(tiny_model):
    import copy

    model = copy.deepcopy(tiny_model)
    trunk = model.backbone.vision_backbone.trunk
    x = torch.randn(1, 3, 336, 336, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = trunk(x)[-1]
        assert rope.realify(model) == 2  # one windowed, one global block
        out = trunk(x)[-1]
    assert not any(v.is_complex() for v in model.state_dict().values())
    assert not any(v.is_complex() for v in model.buffers())
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
