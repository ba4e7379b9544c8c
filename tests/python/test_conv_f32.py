"""The same-convolution kernel on packed pixel panels (lowering/conv_f32.py), with the
AVX-512 tile and the AVX2 one: against float64 PyTorch with partial pixel blocks, output channels not a multiple of the 6-row
tile, 3x3 and 5x5 taps, two images; the importer's contraction it replaces, swapped in a
real component."""
import numpy as np
import pytest

from sam3_tvm.bundle.runtime import _cpu_flags

needs_avx512 = pytest.mark.skipif("avx512f" not in _cpu_flags(), reason="CPU without AVX-512")
needs_avx2 = pytest.mark.skipif(not {"avx2", "fma"} <= set(_cpu_flags()), reason="CPU without AVX2")


def run_conv(lib, n, ci, co, h, w, k, seed):
    """Seeded x[n, ci, h, w] and weights [co, ci, k, k] through a same-conv kernel library
    (`conv`), in the importer's layout: input padded (one extra row below) and flattened,
    taps [co, kh*kw, ci]. Returns x, the weights and the output [n, co, h, w]."""
    import tvm

    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, ci, h, w), dtype=np.float32)
    wt = (rng.standard_normal((co, ci, k, k)) / np.sqrt(ci * k * k)).astype(np.float32)
    p = k // 2
    row = w + 2 * p
    xp = np.pad(x, [(0, 0), (0, 0), (p, p + 1), (p, p)]).reshape(n, ci, -1)
    taps = np.ascontiguousarray(wt.transpose(0, 2, 3, 1).reshape(co, k * k, ci))
    out = tvm.runtime.tensor(np.full((n, co, h * row), np.nan, np.float32))
    lib["conv"](tvm.runtime.tensor(xp), tvm.runtime.tensor(taps), out)
    return x, wt, out.numpy().reshape(n, co, h, row)[..., :w]


@pytest.mark.parametrize("cpu", [pytest.param(None, marks=needs_avx512, id="avx512"),
                                 pytest.param("x86-64-v3", marks=needs_avx2, id="avx2")])
@pytest.mark.parametrize("n,ci,co,h,w,k", [
    (2, 5, 13, 9, 7, 3),      # 2 images, 99 padded pixels: a full block and a partial one; co 13 = 2x6 + 1
    (1, 16, 6, 20, 11, 5),    # 5x5 taps, padding 2
    (1, 64, 70, 33, 40, 3),   # many blocks, co 70 = 11x6 + 4
])
def test_conv_matches_float64(n, ci, co, h, w, k, cpu, tmp_path):
    import torch

    from sam3_tvm.lowering import conv_f32, linear_f32
    from sam3_tvm.lowering.targets import host_target

    if cpu is None and not linear_f32.supported(host_target()):
        pytest.skip("this host's mcpu does not take the AVX-512 tile")
    lib = conv_f32.standalone_library(n, ci, co, h, w, k, str(tmp_path / "conv.so"), cpu=cpu)
    x, wt, got = run_conv(lib, n, ci, co, h, w, k, seed=ci + co)
    ref = torch.nn.functional.conv2d(torch.from_numpy(x).double(), torch.from_numpy(wt).double(),
                                     padding=k // 2).numpy()
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
    # the AVX2 build's module carries the 8-lane tiles, the AVX-512 build's the 16-lane
    src = out.attrs["external_mods"][0].inspect_source()
    avx2 = conv_f32.same_convs(mod, avx2=True).attrs["external_mods"][0].inspect_source()
    assert "SAM3_F32_TILE(6)" in src and "sam3_f32x8" not in src
    assert "SAM3_F32X8_TILE(6)" in avx2 and "avx512" not in avx2
    # GPU builds import the nine-matmul form: nothing to swap
    gpu, _, _ = import_component("grounding_head", tiny_model, tiny_model.sam3_tvm_config)
    assert conv_f32.same_convs(gpu).same_as(gpu)
