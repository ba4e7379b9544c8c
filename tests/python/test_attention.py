"""The fused CPU attention kernel (lowering/attention.py): against float64 NumPy for
shapes with and without tails (rows, keys and head widths that are not multiples of
the tiles), in both vector widths (AVX-512 and AVX2 code, both run here), and which
attention calls of the exported components take it."""
import os

import numpy as np
import pytest
import tvm

from sam3_tvm.lowering import attention as A
from sam3_tvm.lowering.targets import host_target


def _kernel(tmp_path, bh, lq, lk, d, scale, lanes, bias=None):
    """The kernel built alone; lq / lk None: symbolic lengths."""
    func = A.attention_func(bh, lq, lk, d, scale, bias=bias)
    mod = tvm.IRModule({"attn": func.with_attr("global_symbol", "attn")})
    ex = tvm.compile(mod, target=host_target())
    ex.mod.import_module(A.c_module(lanes))
    path = os.path.join(tmp_path, f"attn_{lanes}_{bh}_{lq}_{lk}_{d}_{bias}.so")
    ex.export_library(path, options=["-O3"])
    return tvm.runtime.load_module(path)["attn"]


def _t(k):
    """The kernel takes the keys transposed, [bh, d, lk]."""
    return np.ascontiguousarray(k.transpose(0, 2, 1))


def _reference(q, k, v, scale, bias=None):
    """float64; rows whose scores are all -inf give zeros (torch's exported softmax)."""
    s = (q.astype(np.float64) @ k.astype(np.float64).transpose(0, 2, 1)) * scale
    if bias is not None:
        s = s + bias
    mx = s.max(-1, keepdims=True)
    dead = np.isneginf(mx)
    e = np.exp(s - np.where(dead, 0, mx))
    p = e / np.where(dead, 1, e.sum(-1, keepdims=True))
    return p @ v.astype(np.float64)


SHAPES = [
    (2, 5, 7, 4),        # everything smaller than one tile
    (3, 70, 144, 32),    # a partial row block and a partial key block (tiny ViT windows)
    (2, 64, 128, 64),    # exact tiles (the ViT's head width)
    (1, 130, 200, 256),  # the memory attention's single 256-wide head
    (4, 144, 144, 16),   # the SAM decoder's head width
    (2, 33, 64, 3),      # a head narrower than a vector
]


@pytest.mark.parametrize("lanes", [16, 8], ids=["avx512", "avx2"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_kernel_matches_float64_reference(tmp_path, shape, lanes):
    if lanes == 16 and "avx512f" not in open("/proc/cpuinfo").read():
        pytest.skip("no AVX-512 on this CPU")
    bh, lq, lk, d = shape
    rng = np.random.default_rng(sum(shape))
    q = rng.standard_normal((bh, lq, d), dtype=np.float32)
    k = rng.standard_normal((bh, lk, d), dtype=np.float32) * 3  # peaked rows: the running max matters
    v = rng.standard_normal((bh, lk, d), dtype=np.float32)
    scale = d ** -0.5
    out = tvm.runtime.tensor(np.zeros((bh, lq, d), np.float32))
    _kernel(tmp_path, bh, lq, lk, d, scale, lanes)(
        tvm.runtime.tensor(q), tvm.runtime.tensor(_t(k)),
        tvm.runtime.tensor(v), out)
    np.testing.assert_allclose(out.numpy(), _reference(q, k, v, scale), atol=5e-6, rtol=1e-5)


@pytest.mark.parametrize("lanes", [16, 8], ids=["avx512", "avx2"])
@pytest.mark.parametrize("shape", [(2, 70, 144, 32), (3, 21, 576, 4), (2, 5, 37, 16)],
                         ids=lambda s: "x".join(map(str, s)))
def test_masked_kernel_matches_float64_reference(tmp_path, shape, lanes):
    """An additive bias (the decoder's box bias), -inf keys (padding), a row masked in its
    first key blocks only, and fully masked rows (zeros, as torch's exported softmax)."""
    if lanes == 16 and "avx512f" not in open("/proc/cpuinfo").read():
        pytest.skip("no AVX-512 on this CPU")
    bh, lq, lk, d = shape
    rng = np.random.default_rng(sum(shape) + 1)
    q = rng.standard_normal((bh, lq, d), dtype=np.float32)
    k = rng.standard_normal((bh, lk, d), dtype=np.float32) * 2
    v = rng.standard_normal((bh, lk, d), dtype=np.float32)
    bias = rng.standard_normal((bh, lq, lk)).astype(np.float32) * 4
    bias[:, :, lk // 2:][:, :, ::3] = -np.inf      # padded keys
    bias[0, 1, :] = -np.inf                         # a fully masked row
    bias[-1, 2, : max(1, lk - 3)] = -np.inf         # only the last keys visible
    scale = d ** -0.5
    out = tvm.runtime.tensor(np.zeros((bh, lq, d), np.float32))
    _kernel(tmp_path, bh, lq, lk, d, scale, lanes, bias="rows")(
        tvm.runtime.tensor(q), tvm.runtime.tensor(_t(k)), tvm.runtime.tensor(v), tvm.runtime.tensor(bias), out)
    got, ref = out.numpy(), _reference(q, k, v, scale, bias)
    assert np.isfinite(got).all() and not got[0, 1].any()
    np.testing.assert_allclose(got, ref, atol=5e-6, rtol=1e-5)


@pytest.mark.parametrize("lanes", [16, 8], ids=["avx512", "avx2"])
def test_symbolic_lengths_and_per_key_bias(tmp_path, lanes):
    """One build with symbolic query and key lengths (the SAM decoder's point tokens, the
    memory attention's memories) run at several lengths, with a per-key bias row shared by
    every query (padding masks; the memory attention's unused pointer slots at -1e30)."""
    if lanes == 16 and "avx512f" not in open("/proc/cpuinfo").read():
        pytest.skip("no AVX-512 on this CPU")
    bh, d = 2, 32
    fn = _kernel(tmp_path, bh, None, None, d, d ** -0.5, lanes, bias="keys")
    for lq, lk in [(3, 576), (70, 200), (130, 1152 + 20)]:
        rng = np.random.default_rng(lq + lk)
        q = rng.standard_normal((bh, lq, d), dtype=np.float32)
        k = rng.standard_normal((bh, lk, d), dtype=np.float32) * 2
        v = rng.standard_normal((bh, lk, d), dtype=np.float32)
        kb = np.zeros((bh, 1, lk), np.float32)
        kb[:, :, -20:][:, :, ::2] = -1e30   # unused pointer slots
        kb[1, :, 5:9] = -np.inf             # padded keys
        out = tvm.runtime.tensor(np.zeros((bh, lq, d), np.float32))
        fn(tvm.runtime.tensor(q), tvm.runtime.tensor(_t(k)), tvm.runtime.tensor(v), tvm.runtime.tensor(kb), out)
        ref = _reference(q, k, v, d ** -0.5, np.broadcast_to(kb, (bh, lq, lk)))
        np.testing.assert_allclose(out.numpy(), ref, atol=5e-6, rtol=1e-5, err_msg=f"lq={lq} lk={lk}")
    with pytest.raises(ValueError, match="bias must be"):
        A.attention_func(bh, 4, 4, d, 1.0, bias="cols")


def _bf16(x):
    """Round to bf16 (nearest even) and back, as the kernel rounds its operands."""
    u = np.ascontiguousarray(x, np.float32).view(np.uint32).astype(np.uint64)
    u = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16) << 16
    return u.astype(np.uint32).view(np.float32)


@pytest.mark.parametrize("shape,bias", [((2, 70, 150, 32), "rows"), ((3, 64, 64, 64), None),
                                        ((1, 130, 200, 256), "keys"), ((2, 5, 7, 16), "keys")],
                         ids=["tails-rows", "exact", "d256-keys", "tiny-keys"])
@pytest.mark.parametrize("path", ["amx", "vdpbf16ps", "fp32"])
def test_bf16_kernel(tmp_path, shape, bias, path, monkeypatch):
    """`--precision bf16`: against float64 attention of the bf16-rounded q, k, v (what is left
    is the softmax weights' rounding, ~2^-9 each) and of the fp32 inputs (the bf16 bundle's
    bound, rel L2 <= 1e-2); key tails padded inside the kernel, -inf keys, a fully masked
    row (zeros). Both products on the AMX tiles (CPUs with AMX-BF16; head widths that
    are multiples of 32, rows padded to 16), on vdpbf16ps (SAM3_NO_AMX=1,
    SAM3_BF16_FMA=0), or the whole call on the fp32 kernel (SAM3_BF16_FMA=1, Intel's
    default without AMX: then as close to the exact result as the fp32 kernel is)."""
    import ctypes

    from sam3_tvm.bundle.runtime import cpu_has_amx_bf16, cpu_has_bf16

    if not cpu_has_bf16():
        pytest.skip("no AVX512_BF16 on this CPU")
    if path == "amx" and not cpu_has_amx_bf16():
        pytest.skip("no AMX-BF16 on this CPU")
    # read on the library's first call
    monkeypatch.setenv("SAM3_BF16_FMA", "1" if path == "fp32" else "0")
    if path != "amx":
        monkeypatch.setenv("SAM3_NO_AMX", "1")
    bh, lq, lk, d = shape
    rng = np.random.default_rng(sum(shape) + 7)
    q = rng.standard_normal((bh, lq, d), dtype=np.float32)
    k = rng.standard_normal((bh, lk, d), dtype=np.float32) * 2
    v = rng.standard_normal((bh, lk, d), dtype=np.float32)
    b = None
    if bias:
        b = (rng.standard_normal((bh, lq if bias == "rows" else 1, lk)) * 2).astype(np.float32)
        b[..., 3] = -np.inf
        if bias == "rows":
            b[0, 1, :] = -np.inf
    func = A.attention_bf16_func(bh, lq, lk, d, d ** -0.5, bias)
    mod = tvm.IRModule({"attn": func.with_attr("global_symbol", "attn")})
    ex = tvm.compile(mod, target=host_target())
    ex.mod.import_module(A.c_module(16, bf16=True))
    ex.mod.import_module(A.c_module(16))  # what attach_kernels adds beside it
    lib_path = os.path.join(tmp_path, "attn_bf16.so")
    ex.export_library(lib_path, options=["-O3"])
    out = tvm.runtime.tensor(np.zeros((bh, lq, d), np.float32))
    args = [q, _t(k), v] + ([b] if bias else [])
    tvm.runtime.load_module(lib_path)["attn"](*(tvm.runtime.tensor(a) for a in args), out)
    assert ctypes.CDLL(lib_path).sam3_attention_bf16_on_f32(d) == int(path == "fp32")
    got = out.numpy()
    full_b = None if b is None else np.broadcast_to(b, (bh, lq, lk))
    rounded = _reference(_bf16(q), _bf16(k), _bf16(v), d ** -0.5, full_b)
    exact = _reference(q, k, v, d ** -0.5, full_b)
    rel = lambda a, r: np.linalg.norm(a - r) / np.linalg.norm(r)  # noqa: E731
    assert np.isfinite(got).all()
    if path == "fp32":
        assert rel(got, exact) < 1e-5, rel(got, exact)
    else:
        assert rel(got, rounded) < 3e-3 and 1e-5 < rel(got, exact) < 1e-2, (rel(got, rounded), rel(got, exact))
    if bias == "rows":
        assert not got[0, 1].any()


def test_bf16_kernel_contract():
    """Symbolic lengths and head widths that are not a multiple of 16 stay on the fp32
    kernel; `to_bf16` swaps only the calls the bf16 kernel takes."""
    assert A.bf16_supported(4, 576, 576, 64) and not A.bf16_supported(4, None, 576, 64)
    assert not A.bf16_supported(8, 21, 37, 4)
    with pytest.raises(ValueError, match="no bf16 attention kernel"):
        A.attention_bf16_func(8, 21, 37, 4, 0.5)
    mod = tvm.IRModule({"a": A.attention_func(4, 576, 576, 64, 0.125),
                        "b": A.attention_func(8, 21, 37, 4, 0.5, bias="keys"),
                        "c": A.attention_func(1, None, 100, 32, 0.2)})
    out = A.to_bf16(mod)
    kinds = {gv.name_hint: ("bf16" if "sam3.attention_bf16" in f.attrs else "fp32")
             for gv, f in out.functions.items()}
    assert kinds == {"a": "bf16", "b": "fp32", "c": "fp32"}


def test_large_scores_do_not_overflow(tmp_path):
    """Scores of several hundred (exp would overflow without the running maximum), and a
    row whose maximum arrives only in the last key block."""
    bh, lq, lk, d = 1, 4, 192, 16
    q = np.full((bh, lq, d), 10.0, np.float32)
    k = np.zeros((bh, lk, d), np.float32)
    k[0, -1] = 6.0
    v = np.arange(bh * lk * d, dtype=np.float32).reshape(bh, lk, d) / 100
    out = tvm.runtime.tensor(np.zeros((bh, lq, d), np.float32))
    _kernel(tmp_path, bh, lq, lk, d, 1.0, 8)(
        tvm.runtime.tensor(q), tvm.runtime.tensor(_t(k)),
        tvm.runtime.tensor(v), out)
    assert np.isfinite(out.numpy()).all()
    np.testing.assert_allclose(out.numpy(), _reference(q, k, v, 1.0), atol=1e-5, rtol=1e-5)


@pytest.fixture(scope="module")
def real_model():
    """The tiny model with real-valued RoPE, as compile_bundle imports it."""
    from sam3_tvm.model import rope
    from sam3_tvm.model.builder import build_model

    model = build_model("tiny", seed=0)
    rope.realify(model)
    return model


def _fused_calls(name, model):
    from sam3_tvm.frontend.importer import import_component

    mod, _, _ = import_component(name, model, model.sam3_tvm_config, fused_attention=True)
    return sorted(str(gv.name_hint) for gv, f in mod.functions.items()
                  if isinstance(f, tvm.tirx.PrimFunc) and "sam3.attention" in (f.attrs or {}))


def test_vit_attention_takes_the_fused_kernel(real_model):
    """The tiny ViT: one windowed block (4 windows x 2 heads, 144 tokens, head 32) and one
    global block (2 heads, 576 tokens)."""
    assert _fused_calls("image_encoder", real_model) == ["sam3_attention_2_576_576_32",
                                                         "sam3_attention_8_144_144_32"]


def test_masked_attention_takes_the_fused_kernel(real_model):
    """Masked calls too: the text encoder's causal mask (a bias per score), and in the
    grounding head the fusion encoder's self-attention (576 image tokens), the geometry
    encoder's cross-attention (5 prompt tokens to the image), the decoder's image
    cross-attention with its box bias (21 queries), the `nn.MultiheadAttention` calls that
    asked for weights (the decoder's self-attention over its 21 queries, its text
    cross-attention to the 37 prompt tokens), the fusion encoder's cross-attention to the
    prompt and the prompt self-attention: the padding masks stay one row of per-key terms."""
    assert _fused_calls("text_encoder", real_model) == ["sam3_attention_bias_2_32_32_32"]
    assert _fused_calls("grounding_head", real_model) == [
        "sam3_attention_8_21_21_4", "sam3_attention_8_576_576_4", "sam3_attention_8_5_576_4",
        "sam3_attention_bias_8_21_576_4", "sam3_attention_keybias_8_21_37_4",
        "sam3_attention_keybias_8_576_37_4", "sam3_attention_keybias_8_5_5_4"]


def test_symbolic_attention_takes_the_fused_kernel(real_model):
    """Symbolic lengths too (n): the SAM decoder's token self-attention and its two
    cross-attentions with the image, and the tracker's memory attention (self-attention
    over the frame, cross-attention to num_mem memories + the pointer slots, whose
    unused-slot bias is per key). No softmax is left outside the kernel in any component."""
    from sam3_tvm.frontend.importer import import_component
    from sam3_tvm.model.components import COMPONENTS

    assert _fused_calls("interactive_decoder", real_model) == [
        "sam3_attention_8_576_n_2", "sam3_attention_8_n_576_2", "sam3_attention_8_n_n_4"]
    assert _fused_calls("memory_attention", real_model) == [
        "sam3_attention_1_576_576_32", "sam3_attention_keybias_1_576_n_32"]
    for name in COMPONENTS:
        mod, _, _ = import_component(name, real_model, real_model.sam3_tvm_config, fused_attention=True)
        text = str(mod)
        assert "R.nn.softmax" not in text and "R.exp(" not in text, name


def test_export_restores_torch(real_model):
    """The export's attention patches (SDPA, need_weights) end with the export."""
    import torch.nn.functional as F

    from sam3_tvm.frontend.export import export_component, fused_attention_enabled

    sdpa, mha = F.scaled_dot_product_attention, F.multi_head_attention_forward
    export_component("grounding_head", real_model, real_model.sam3_tvm_config, fused_attention=True)
    assert F.scaled_dot_product_attention is sdpa and F.multi_head_attention_forward is mha
    assert not fused_attention_enabled()


def test_without_the_flag_nothing_is_fused(real_model):
    from sam3_tvm.frontend.importer import import_component

    mod, _, _ = import_component("image_encoder", real_model, real_model.sam3_tvm_config)
    assert not any("sam3.attention" in (f.attrs or {}) for f in mod.functions.values()
                   if isinstance(f, tvm.tirx.PrimFunc))


def test_avx2_build_has_no_avx512_and_passes_parity(tmp_path):
    """`--cpu x86-64-v3` (any AVX2 + FMA machine): 8-lane schedules and the AVX2 attention
    kernel, no AVX-512 instruction in the libraries (objdump), and the same parity."""
    import subprocess

    from sam3_tvm.bundle.writer import compile_bundle
    from sam3_tvm.lowering import targets
    from sam3_tvm.tools.verify import verify_bundle

    out = str(tmp_path / "avx2")
    comps = ("image_encoder", "grounding_head")
    man = compile_bundle("tiny", out, components=comps, target=targets.parse("cpu", cpu="x86-64-v3"))
    assert man["target"]["mcpu"] == "x86-64-v3"
    for c in comps:
        asm = subprocess.run(["objdump", "-d", os.path.join(out, f"{c}.so")], capture_output=True,
                             text=True, check=True).stdout
        assert "ymm" in asm and "zmm" not in asm, c
    rows = verify_bundle(out, components=list(comps))
    assert rows and all(r["passed"] for r in rows)
