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


def _pointwise_module(n, ci, co, pixels):
    """main(x[n, ci, pixels], w[co, ci]) = w @ x, w a weight: the importer's 1x1 conv."""
    from tvm import relax

    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((n, ci, pixels), "float32"))
    w = relax.Var("w", relax.TensorType((co, ci), "float32"))
    with bb.function("main", [x, w], attrs={"num_input": 1}):
        with bb.dataflow():
            y = bb.emit_output(relax.op.matmul(w, x))
        bb.emit_func_output(y)
    return bb.get()


@needs_avx2
def test_pointwise_conv_matches_float64(tmp_path):
    """A 1x1 conv with co >= POINTWISE_MIN_CO goes to the kernel as one tap (two images,
    a partial pixel block, co not a multiple of 6) and matches float64; the C module is
    attached once however often the rewrites run."""
    import tvm
    from tvm import relax

    from sam3_tvm.lowering import conv_f32
    from sam3_tvm.lowering.targets import host_target

    n, ci, co, pixels = 2, 40, conv_f32.POINTWISE_MIN_CO + 2, 150
    out = conv_f32.pointwise_convs(_pointwise_module(n, ci, co, pixels), avx2=True)
    assert "pointwise_conv_" in out["main"].script() and "matmul" not in out["main"].script()
    assert len(out.attrs["external_mods"]) == 1
    assert len(conv_f32.same_convs(conv_f32._with_kernel(out, True), True).attrs["external_mods"]) == 1
    ex = tvm.compile(out, target=host_target(cpu="x86-64-v3"))
    path = str(tmp_path / "pointwise.so")
    ex.export_library(path, options=["-O3"])
    vm = relax.VirtualMachine(tvm.runtime.load_module(path), tvm.cpu())
    rng = np.random.default_rng(7)
    x = rng.standard_normal((n, ci, pixels), dtype=np.float32)
    w = (rng.standard_normal((co, ci)) / np.sqrt(ci)).astype(np.float32)
    got = vm["main"](tvm.runtime.tensor(x), tvm.runtime.tensor(w)).numpy()
    ref = np.einsum("oc,ncp->nop", w.astype(np.float64), x.astype(np.float64))
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())


def test_narrow_pointwise_conv_stays_a_matmul():
    """Below POINTWISE_MIN_CO output channels (the window copy would dominate), or with
    no weight on the left, the matmul is left alone."""
    from sam3_tvm.lowering import conv_f32

    narrow = _pointwise_module(1, 64, conv_f32.POINTWISE_MIN_CO - 1, 4096)
    assert conv_f32.pointwise_convs(narrow, avx2=True).same_as(narrow)
    both_inputs = _pointwise_module(1, 64, 256, 4096)
    both_inputs["main"] = both_inputs["main"].with_attr("num_input", 2)
    assert conv_f32.pointwise_convs(both_inputs, avx2=True).same_as(both_inputs)
