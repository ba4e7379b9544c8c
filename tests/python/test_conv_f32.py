"""The same-convolution kernel on packed pixel panels (lowering/conv_f32.py): against
float64 PyTorch with partial pixel blocks, output channels not a multiple of the 6-row
tile, 3x3 and 5x5 taps, two images; the importer's contraction it replaces, swapped in a
real component."""
import numpy as np
import pytest

from sam3_tvm.bundle.runtime import _cpu_flags

needs_avx512 = pytest.mark.skipif("avx512f" not in _cpu_flags(), reason="CPU without AVX-512")


@needs_avx512
@pytest.mark.parametrize("n,ci,co,h,w,k", [
    (2, 5, 13, 9, 7, 3),      # 2 images, 99 padded pixels: a full block and a partial one; co 13 = 2x6 + 1
    (1, 16, 6, 20, 11, 5),    # 5x5 taps, padding 2
    (1, 64, 70, 33, 40, 3),   # many blocks, co 70 = 11x6 + 4
])
def test_conv_matches_float64(n, ci, co, h, w, k, tmp_path):
    import torch
    import tvm

    from sam3_tvm.lowering import conv_f32

    lib = conv_f32.standalone_library(n, ci, co, h, w, k, str(tmp_path / "conv.so"))
    rng = np.random.default_rng(ci + co)
    x = rng.standard_normal((n, ci, h, w), dtype=np.float32)
    wt = (rng.standard_normal((co, ci, k, k)) / np.sqrt(ci * k * k)).astype(np.float32)
    p = k // 2
    row = w + 2 * p
    # the importer's layout: padded (one extra row below), flattened; taps [co, kh*kw, ci]
    xp = np.pad(x, [(0, 0), (0, 0), (p, p + 1), (p, p)]).reshape(n, ci, -1)
    taps = np.ascontiguousarray(wt.transpose(0, 2, 3, 1).reshape(co, k * k, ci))
    out = tvm.runtime.tensor(np.full((n, co, h * row), np.nan, np.float32))
    lib["conv"](tvm.runtime.tensor(xp), tvm.runtime.tensor(taps), out)
    got = out.numpy().reshape(n, co, h, row)[..., :w]
    ref = torch.nn.functional.conv2d(torch.from_numpy(x).double(), torch.from_numpy(wt).double(),
                                     padding=p).numpy()
    # fp32 sums over ci * k * k terms of unit scale
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())


def test_swap_in_a_component(tiny_model):
    """The tiny grounding head's pixel-decoder 3x3 (96x96) is imported as the tagged
    contraction; same_convs replaces that PrimFunc by the extern kernel, keeps every
    call site, and attaches the C module once."""
    from sam3_tvm.frontend.importer import import_component
    from sam3_tvm.lowering import conv_f32

    mod, _, _ = import_component("grounding_head", tiny_model, tiny_model.sam3_tvm_config,
                                 cpu=True, fused_attention=True)
    tagged = [gv for gv, f in mod.functions.items()
              if hasattr(f, "params") and f.attrs is not None and conv_f32.ATTR in f.attrs]
    assert tagged
    calls = mod["main"].script().count("same_conv")
    out = conv_f32.same_convs(mod)
    for gv in tagged:
        assert "sam3_same_conv_block" in out[gv].script()
    assert out["main"].script().count("same_conv") == calls
    assert len(out.attrs["external_mods"]) == 1
    # GPU builds import the nine-matmul form: nothing to swap
    gpu, _, _ = import_component("grounding_head", tiny_model, tiny_model.sam3_tvm_config)
    assert conv_f32.same_convs(gpu).same_as(gpu)
