"""--precision bf16: the vdpbf16ps kernel, the weight packing, and a tiny bf16 bundle's parity."""
import json
import os

import ml_dtypes
import numpy as np
import pytest

from sam3_tvm.bundle.runtime import cpu_has_amx_bf16, cpu_has_bf16

needs_bf16 = pytest.mark.skipif(not cpu_has_bf16(), reason="CPU without AVX512_BF16")


@pytest.fixture(autouse=True)
def _vdpbf16ps(monkeypatch):
    """The kernels' bf16 paths (AMX, vdpbf16ps) unless a test asks for the FMA path that
    Intel CPUs without AMX take by default (the libraries read this on their first call)."""
    monkeypatch.setenv("SAM3_BF16_FMA", "0")


def _bf16(a):
    """Round-to-nearest-even to bf16 (ml_dtypes), back in fp32."""
    return a.astype(ml_dtypes.bfloat16).astype(np.float32)


def _build(m, k, n, tmp_path, gelu=False):
    from sam3_tvm.lowering import bf16

    return bf16.standalone_library(m, k, n, str(tmp_path / "gemm.so"), gelu=gelu)


def _run(lib, x, w, b):
    """Pack w with the library's `pack`, run its `gemm` on x and b; the output as numpy."""
    import tvm

    (m, k), n = x.shape, w.shape[1]
    packed = tvm.runtime.tensor(np.zeros((n // 64, k // 2, 64, 2), np.uint16))
    lib["pack"](tvm.runtime.tensor(w), packed)
    out = tvm.runtime.tensor(np.full((m, n), np.nan, np.float32))
    lib["gemm"](tvm.runtime.tensor(x), packed, tvm.runtime.tensor(b), out)
    return out.numpy()


def _scaled_case(lib, m, k, n, seed):
    """Random x, W (scaled so x @ W is about 4 in size, into GELU's curved part) and bias,
    and the library's output for them."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((m, k), dtype=np.float32)
    w = (rng.standard_normal((k, n)) / np.sqrt(k) * 4).astype(np.float32)
    b = rng.standard_normal(n, dtype=np.float32)
    return x, w, b, _run(lib, x, w, b)


def _panel_layout(wb):
    """bf16 bits W [K, N] in pack_func's layout, written from its description: 64-column
    panels of pairs of rows; inside a panel, blocks of 16 pairs (the last may be short),
    each block four groups of 16 columns stored [pairs][16][2]."""
    k, n = wb.shape
    k2, p = k // 2, n // 64
    plain = wb.reshape(k2, 2, p, 64).transpose(2, 0, 3, 1)  # [panel, pair, column, 2]
    out = np.empty((p, k2 * 128), wb.dtype)
    for b0 in range(0, k2, 16):
        bs = min(16, k2 - b0)
        grouped = plain[:, b0:b0 + bs].reshape(p, bs, 4, 16, 2).transpose(0, 2, 1, 3, 4)
        out[:, b0 * 128:(b0 + bs) * 128] = grouped.reshape(p, -1)
    return out.reshape(p, k2, 64, 2)


def _gelu(a):
    """Exact (erf) GELU in float64, as nn.GELU computes it."""
    import torch

    return torch.nn.functional.gelu(torch.from_numpy(np.asarray(a, np.float64))).numpy()


@needs_bf16
@pytest.mark.parametrize("m,k,n", [(13, 96, 128), (6, 2, 64), (1, 1024, 192), (5, 40, 64)])
def test_gemm_matches_bf16_products(m, k, n, tmp_path):
    """Remainder row tiles (13 = 2x6 + 1), K = 2 (one short block of pairs), a single
    row, K = 40 (a block of 16 pairs and a short one of 4): the kernel computes
    bf16(x) @ bf16(W) + bias with fp32 accumulation."""
    import tvm

    lib = _build(m, k, n, tmp_path)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((m, k), dtype=np.float32)
    w = rng.standard_normal((k, n), dtype=np.float32)
    b = rng.standard_normal(n, dtype=np.float32)
    packed = tvm.runtime.tensor(np.zeros((n // 64, k // 2, 64, 2), np.uint16))
    lib["pack"](tvm.runtime.tensor(w), packed)
    # packing = RNE rounding + the panel layout
    np.testing.assert_array_equal(packed.numpy(), _panel_layout(w.astype(ml_dtypes.bfloat16).view(np.uint16)))
    out = tvm.runtime.tensor(np.zeros((m, n), np.float32))
    lib["gemm"](tvm.runtime.tensor(x), packed, tvm.runtime.tensor(b), out)
    ref = _bf16(x).astype(np.float64) @ _bf16(w).astype(np.float64) + b
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())
    exact = x.astype(np.float64) @ w + b
    assert np.linalg.norm(out.numpy() - exact) / np.linalg.norm(exact) < 1e-2


@needs_bf16
@pytest.mark.parametrize("amx", [True, False])
@pytest.mark.parametrize("gelu", [False, True])
def test_gemm_amx_blocks_and_fallback(amx, gelu, tmp_path, monkeypatch):
    """M = 70: two 32-row blocks on the AMX tiles (where the CPU has AMX-BF16) and 6 rows
    on vdpbf16ps; K = 96 is 3 tile steps of 32. With SAM3_NO_AMX=1 every row takes the
    vdpbf16ps tiles. Both against the same bf16 products (+ bias, + exact GELU)."""
    import ctypes

    if amx and not cpu_has_amx_bf16():
        pytest.skip("CPU without AMX-BF16")
    if not amx:
        monkeypatch.setenv("SAM3_NO_AMX", "1")  # read on the library's first call
    m, k, n = 70, 96, 128
    x, w, b, out = _scaled_case(_build(m, k, n, tmp_path, gelu=gelu), m, k, n, seed=2)
    # the same library, asked directly whether it took the tiles
    assert ctypes.CDLL(str(tmp_path / "gemm.so")).sam3_amx_available() == int(amx)
    pre = _bf16(x).astype(np.float64) @ _bf16(w).astype(np.float64) + b
    ref = _gelu(pre) if gelu else pre
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5 * np.abs(pre).max())


@needs_bf16
def test_gemm_amx_row_blocks(tmp_path, monkeypatch):
    """K = 64 with 256-row blocks (AMX_BLOCK_BYTES made 32 KiB): M = 600 is two such
    blocks on the AMX tiles and a last one of 88 rows, 64 on the tiles and 24 on vdpbf16ps
    (fewer than 32). Every row against the bf16 products."""
    from sam3_tvm.lowering import bf16

    assert bf16.amx_row_block(1024) == 512 and bf16.amx_row_block(2048) == 256
    assert bf16.amx_row_block(4736) == 0  # long K: all rows in one block
    monkeypatch.setattr(bf16, "AMX_BLOCK_BYTES", 1 << 15)
    assert bf16.amx_row_block(64) == 256
    m, k, n = 600, 64, 128
    x, w, b, out = _scaled_case(_build(m, k, n, tmp_path), m, k, n, seed=3)
    ref = _bf16(x).astype(np.float64) @ _bf16(w).astype(np.float64) + b
    assert not np.isnan(out).any()
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())


@needs_bf16
@pytest.mark.parametrize("fma", [True, False])
@pytest.mark.parametrize("m,k,n,gelu", [(13, 40, 128, False), (70, 96, 128, True), (8, 2, 64, False)])
def test_gemm_fma_path(fma, m, k, n, gelu, tmp_path, monkeypatch):
    """Intel CPUs without AMX (SAM3_BF16_FMA=1; GenuineIntel's default) multiply fp32 x by
    W's bf16 values on fp32 FMAs; the others (=0) bf16(x) on vdpbf16ps. Each against its
    own float64 reference, which the other path misses by far more than the tolerance.
    13 rows = 6 + 6 + 1 (a short row block), K = 40 (a block of 16 pairs and one of 4),
    K = 2, 70 rows with the GELU epilogue; no AMX, so every row takes the path under test
    (8 rows, the least that takes the FMAs)."""
    import ctypes

    monkeypatch.setenv("SAM3_NO_AMX", "1")
    monkeypatch.setenv("SAM3_BF16_FMA", "1" if fma else "0")
    x, w, b, out = _scaled_case(_build(m, k, n, tmp_path, gelu=gelu), m, k, n, seed=3)
    so = ctypes.CDLL(str(tmp_path / "gemm.so"))
    assert so.sam3_bf16_uses_fma() == int(fma)
    assert so.sam3_bf16_gemm_on_fma(ctypes.c_int64(m), ctypes.c_int64(k)) == int(fma)
    xs = x if fma else _bf16(x)
    pre = xs.astype(np.float64) @ _bf16(w).astype(np.float64) + b
    ref = _gelu(pre) if gelu else pre
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5 * np.abs(pre).max())


def test_fma_path_is_intels_default(tmp_path, monkeypatch):
    """Without SAM3_BF16_FMA the library takes the FMA path exactly on GenuineIntel CPUs
    (the vendor read here from /proc/cpuinfo, not from the library's cpuid), and never
    for fewer than 8 rows."""
    import ctypes

    if not cpu_has_bf16():
        pytest.skip("CPU without AVX512_BF16")
    monkeypatch.delenv("SAM3_BF16_FMA", raising=False)
    with open("/proc/cpuinfo") as f:
        intel = "GenuineIntel" in f.read()
    monkeypatch.setenv("SAM3_NO_AMX", "1")
    _build(8, 32, 64, tmp_path)
    so = ctypes.CDLL(str(tmp_path / "gemm.so"))
    assert so.sam3_bf16_uses_fma() == int(intel)
    assert so.sam3_bf16_gemm_on_fma(ctypes.c_int64(8), ctypes.c_int64(32)) == int(intel)
    assert so.sam3_bf16_gemm_on_fma(ctypes.c_int64(7), ctypes.c_int64(32)) == 0


@needs_bf16
@pytest.mark.parametrize("m,k,n", [(13, 96, 128), (7, 1024, 256)])
def test_gemm_gelu_epilogue(m, k, n, tmp_path):
    """A linear followed by GELU: the epilogue's rational erf against the exact GELU of
    the same bf16 products, over inputs wide enough to reach the clamped tails
    (pre-activations from about -30 to 30)."""
    lib = _build(m, k, n, tmp_path, gelu=True)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((m, k), dtype=np.float32)
    w = (rng.standard_normal((k, n)) / np.sqrt(k) * 8).astype(np.float32)
    b = rng.standard_normal(n, dtype=np.float32)
    out = _run(lib, x, w, b)
    pre = _bf16(x).astype(np.float64) @ _bf16(w).astype(np.float64) + b
    assert pre.min() < -8 and pre.max() > 8
    ref = _gelu(pre)
    got = out
    # products: fp32 accumulation (1e-5 of the scale); erf: < 4e-7 absolute, times |x|/2
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5 * np.abs(pre).max())
    neg = pre < -6  # GELU's tail: |value| < 1e-8, never positive
    assert np.all(np.abs(got[neg]) < 1e-6)


def test_rewrite_covers_the_weight_linears():
    """Every weight matmul with K even and N a multiple of 64 takes the kernel; the
    attention matmuls (activation x activation) do not."""
    from sam3_tvm.model import rope
    from sam3_tvm.lowering.bf16 import _plan, bf16_linears
    from sam3_tvm.frontend.importer import import_component

    from sam3_tvm.model.builder import build_model

    tiny_model = build_model("tiny", seed=0)  # its own: realify changes the model
    rope.realify(tiny_model)
    mod, _, _ = import_component("image_encoder", tiny_model, tiny_model.sam3_tvm_config)
    plan = _plan(mod["main"])
    assert plan  # tiny ViT: qkv (64->192), fc1 (64->256), ...
    out = bf16_linears(mod)
    text = out["main"].script()
    assert text.count("sam3_bf16_gemm") >= len(plan)
    assert "external_mods" in (out.attrs or {})
    for call in [ln for ln in text.splitlines() if "R.matmul(" in ln]:
        assert "p_" not in call.split("R.matmul(")[1].split(")")[0]  # no weight operand left
    # a GELU after a linear runs in the kernel's epilogue: the text encoder's MLPs (the tiny
    # ViT's fc1 has N = 296, not a multiple of 64, so it stays fp32 there; the full one's
    # 4736 takes the kernel)
    mod, _, _ = import_component("text_encoder", tiny_model, tiny_model.sam3_tvm_config)
    gelus = mod["main"].script().count("R.nn.gelu(")
    text = bf16_linears(mod)["main"].script()
    assert gelus == 2 and "R.nn.gelu(" not in text
    assert text.count("_gelu, (") == gelus  # calls of the GELU variant of the kernel


@needs_bf16
def test_tiny_bf16_bundle(tmp_path):
    """Compile, store packed bf16 weights, run attention on the bf16 kernel, and pass parity
    at the bf16 tolerance."""
    from sam3_tvm.lowering import targets
    from sam3_tvm.bundle.writer import compile_bundle
    from sam3_tvm.tools.verify import BF16_TOLERANCE, require_pass, verify_bundle

    out = str(tmp_path / "tiny-bf16")
    spec = targets.parse("cpu", precision="bf16")
    compile_bundle("tiny", out, seed=0, components=("image_encoder", "text_encoder"), target=spec)
    man = json.load(open(os.path.join(out, "manifest.json")))
    assert man["target"]["precision"] == "bf16"
    enc = man["components"]["image_encoder"]
    packed = [p for p, d in zip(enc["params"], enc["param_dtypes"]) if d == "uint16"]
    assert packed and all(":sam3_bf16_pack_" in p for p in packed)
    # the encoders' attention (head width 32) on the bf16 kernel too
    for c in ("image_encoder", "text_encoder"):
        assert b"sam3_attention_bf16" in open(os.path.join(out, f"{c}.so"), "rb").read(), c
    from sam3_tvm.lowering import conv_f32
    if conv_f32.supported(targets.tvm_target(spec)):
        # AVX-512 Intel: the neck's 3x3 convolutions (32 channels: K = 288) on bf16 products
        assert b"sam3_same_conv_block_bf16" in open(os.path.join(out, "image_encoder.so"), "rb").read()
    rows = verify_bundle(out)
    require_pass(rows)
    assert all(r["tolerance"] == "exact" or f"relL2<={BF16_TOLERANCE['rel_l2']:g}" in r["tolerance"]
               for r in rows)


def test_bf16_bundle_refused_without_avx512_bf16(tmp_path, monkeypatch):
    from sam3_tvm.bundle import runtime
    from sam3_tvm.errors import Sam3TvmError

    (tmp_path / "manifest.json").write_text(json.dumps({"target": {"precision": "bf16"}}))
    monkeypatch.setattr(runtime, "cpu_has_bf16", lambda: False)
    monkeypatch.setattr(runtime, "load_manifest", lambda p: json.load(open(os.path.join(p, "manifest.json"))))
    with pytest.raises(Sam3TvmError, match="AVX512_BF16"):
        runtime.Bundle(str(tmp_path))


@pytest.mark.parametrize("kind,precision,message", [
    ("cuda", "bf16", "bf16 is for --target cpu"),
    ("cpu", "fp16", "fp16 is for GPU targets"),
])
def test_precision_target_mismatch(kind, precision, message):
    from sam3_tvm.lowering import targets
    from sam3_tvm.errors import Sam3TvmError

    with pytest.raises(Sam3TvmError, match=message):
        targets.parse(kind, precision=precision)


@pytest.mark.parametrize("component, linears", [("grounding_head", False), ("image_encoder", True),
                                                ("interactive_decoder", None)])
@needs_bf16
def test_bf16_precision_per_component(component, linears, monkeypatch):
    """--precision bf16 moves the encoders' linears and attention to bf16, and the
    grounding head's attention alone (its linears missed the bound; its attention passes:
    full model pred_logits rel L2 2.8e-3); the interactive decoder stays fp32. The tiny
    heads are too narrow for the bf16 kernel, so this checks which rewrites each
    component gets, stopping the compile after them; the kernel has its own parity tests."""
    from sam3_tvm.bundle import writer
    from sam3_tvm.lowering import attention, bf16, targets
    from sam3_tvm.model import rope
    from sam3_tvm.model.builder import build_model

    seen = []

    class Stop(Exception):
        pass

    def record(what):
        def fn(mod):
            seen.append(what)
            return mod
        return fn

    def stage(what):
        if what == "lift weights":  # the rewrites are done
            raise Stop

    monkeypatch.setattr(attention, "to_bf16", record("attention"))
    monkeypatch.setattr(bf16, "bf16_linears", record("linears"))
    model = build_model("tiny", seed=0)
    rope.realify(model)  # as compile_bundle does
    spec = targets.parse("cpu", precision="bf16")
    with pytest.raises(Stop):
        writer.compile_component(component, model, model.sam3_tvm_config, targets.tvm_target(spec),
                                 "/nonexistent", spec=spec, stage=stage)
    want = [] if linears is None else (["linears", "attention"] if linears else ["attention"])
    assert seen == want
