"""The fp32 linear kernel on packed weights (lowering/linear_f32.py): against float64 NumPy,
with row tails, K blocks and a K tail, bias and the GELU epilogue; the packing layout;
which targets take it; the rewrite of an exported component."""
import numpy as np
import pytest

from sam3_tvm.bundle.runtime import _cpu_flags

needs_avx512 = pytest.mark.skipif("avx512f" not in _cpu_flags(), reason="CPU without AVX-512")


def _gelu(a):
    import torch

    return torch.nn.functional.gelu(torch.from_numpy(np.asarray(a, np.float64))).numpy()


needs_avx2 = pytest.mark.skipif(not {"avx2", "fma"} <= set(_cpu_flags()), reason="CPU without AVX2")
# the AVX-512 kernel (this host's mcpu) and the AVX2 one (an x86-64-v3 build)
CPUS = [pytest.param(None, marks=needs_avx512, id="avx512"),
        pytest.param("x86-64-v3", marks=needs_avx2, id="avx2")]


@pytest.mark.parametrize("cpu", CPUS)
@pytest.mark.parametrize("m,k,n,kc,gelu", [
    (13, 96, 128, 256, False),    # row tail (13 = 2x6 + 1), one K block
    (70, 600, 192, 256, False),   # K blocks 256 + 256 + 88 (a tail), 3 panels
    (7, 1024, 64, 128, True),     # GELU only after the last of 8 K blocks
    (1, 5, 64, 256, True),        # a single row, K smaller than a vector
    (17, 40, 320, 256, True),     # AVX2: the row tail (5) in each of 4 sub-panels, 5 calls
])
def test_gemm_matches_float64(m, k, n, kc, gelu, cpu, tmp_path):
    import tvm

    from sam3_tvm.lowering import linear_f32
    from sam3_tvm.lowering.targets import host_target

    if cpu is None and not linear_f32.supported(host_target()):
        pytest.skip("this host's mcpu does not take the AVX-512 kernel")
    lib = linear_f32.standalone_library(m, k, n, str(tmp_path / "gemm.so"), gelu=gelu, kc=kc,
                                        cpu=cpu)
    rng = np.random.default_rng(m + k + n)
    x = rng.standard_normal((m, k), dtype=np.float32)
    w = (rng.standard_normal((k, n)) / np.sqrt(k) * 4).astype(np.float32)
    b = rng.standard_normal(n, dtype=np.float32)
    shape, _ = linear_f32.kind_for(host_target(cpu=cpu)).packed_type(k, n)
    assert shape == ((n // 16, k, 16) if cpu else (n // 64, k, 64))
    packed = tvm.runtime.tensor(np.zeros(shape, np.float32))
    lib["pack"](tvm.runtime.tensor(w), packed)
    np.testing.assert_array_equal(packed.numpy().transpose(1, 0, 2).reshape(k, n), w)
    out = tvm.runtime.tensor(np.full((m, n), np.nan, np.float32))
    lib["gemm"](tvm.runtime.tensor(x), packed, tvm.runtime.tensor(b), out)
    pre = x.astype(np.float64) @ w.astype(np.float64) + b
    ref = _gelu(pre) if gelu else pre
    # fp32 sums over k (~sqrt(k) eps of the scale); erf: < 4e-7 absolute
    np.testing.assert_allclose(out.numpy(), ref, rtol=2e-5, atol=2e-5 * np.abs(pre).max())


def test_which_targets_take_it():
    """AVX-512 x86 CPUs except AMD's (Zen 4 keeps the default schedule, at 95% of peak
    there); AVX2 builds and other architectures never."""
    import tvm

    from sam3_tvm.lowering import linear_f32

    def t(mcpu, triple="x86_64-linux-gnu"):
        return tvm.target.Target({"kind": "llvm", "mtriple": triple, "mcpu": mcpu})

    assert linear_f32.supported(t("sapphirerapids")) and linear_f32.supported(t("rocketlake"))
    assert not linear_f32.supported(t("znver4"))
    assert not linear_f32.supported(t("x86-64-v3"))
    assert not linear_f32.supported(t("apple-m1", "arm64-apple-macos"))
    # the AVX2 tiles: AVX2 builds (any vendor); not AVX-512 ones, not other architectures
    assert linear_f32.kind_for(t("x86-64-v3")) is linear_f32.KIND_AVX2
    assert linear_f32.kind_for(t("haswell")) is linear_f32.KIND_AVX2
    assert linear_f32.kind_for(t("sapphirerapids")) is linear_f32.KIND
    assert linear_f32.kind_for(t("znver4")) is None
    assert linear_f32.kind_for(t("apple-m1", "arm64-apple-macos")) is None


@pytest.mark.parametrize("avx2", [False, True], ids=["avx512", "avx2"])
def test_rewrite_covers_the_weight_linears(tiny_model, avx2):
    """Every weight matmul with N a multiple of 64 takes the packed kernel (with its bias
    and, in the text encoder, its GELU); the C module is attached once."""
    from sam3_tvm.frontend.importer import import_component
    from sam3_tvm.lowering import bf16, linear_f32

    mod, _, _ = import_component("text_encoder", tiny_model, tiny_model.sam3_tvm_config)
    plan = bf16._plan(mod["main"], 1)
    assert plan
    gelus = mod["main"].script().count("R.nn.gelu(")
    kind = linear_f32.KIND_AVX2 if avx2 else linear_f32.KIND
    out = linear_f32.f32_linears(mod, kind)
    text = out["main"].script()
    other = "sam3_f32_gemm" if avx2 else "sam3_f32x8_gemm"
    assert text.count(kind.prefix + "gemm") >= len(plan) and other not in text
    assert "sam3_bf16" not in text
    assert "R.nn.gelu(" not in text and text.count("_gelu, (") == gelus
    names = [m.kind if hasattr(m, "kind") else str(m) for m in out.attrs["external_mods"]]
    assert len(names) == 1
