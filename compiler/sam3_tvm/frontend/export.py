"""torch.export of each component at its fixed signature."""

from __future__ import annotations

import contextlib

import torch

from sam3_tvm.model import components as C


def export_component(name: str, model, cfg, fused_attention: bool = False):
    """Return (`torch.export.ExportedProgram`, wrapper module) for component `name`.
    `fused_attention` (CPU targets): attention (masked or not, static or symbolic lengths,
    static head width) is exported as one `sam3::attention` op, which the importer maps
    to the fused kernel (lowering/attention.py)."""
    import inspect

    wrapper = C.make(name, model)
    args = tuple(C.example_inputs(name, cfg))
    dims = {d: torch.export.Dim(d, min=lo, max=hi) for d, (lo, hi) in C.symbolic_dims(name, cfg).items()}
    dynamic = None
    if dims:
        ins, _ = C.signature(name, cfg)
        params = list(inspect.signature(wrapper.forward).parameters)
        dynamic = {p: ({i: dims[d] for i, d in enumerate(spec.shape) if isinstance(d, str)} or None)
                   for p, spec in zip(params, ins)}
    with torch.no_grad(), _pos_enc_cache_kept(model), _unmasked_attention_as_math(fused_attention):
        ep = torch.export.export(wrapper, args, dynamic_shapes=dynamic, strict=False)
    return ep, wrapper


@contextlib.contextmanager
def _pos_enc_cache_kept(model):
    """`PositionEmbeddingSine` memoises encodings in a dict; entries added while
    tracing would hold export-time fake tensors. Restore the caches afterwards."""
    from sam3.model.position_encoding import PositionEmbeddingSine

    saved = [(m, dict(m.cache)) for m in model.modules() if isinstance(m, PositionEmbeddingSine)]
    try:
        yield
    finally:
        for m, cache in saved:
            m.cache = cache


@torch.library.custom_op("sam3::attention", mutates_args=())
def fused_attention_op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None,
                       scale: float) -> torch.Tensor:
    """softmax(q k^T * scale + bias) v over [N, L, D] tensors (bias [N, Lq, Lk] or None):
    one op in the exported graph, lowered to the fused CPU kernel (lowering/attention.py)
    by converters.attention. Rows whose scores are all -inf give zeros."""
    s = (q * scale) @ k.transpose(-2, -1)
    if bias is not None:
        s = s + bias
    p = torch.softmax(s, dim=-1).nan_to_num(0.0)
    return p @ v


@fused_attention_op.register_fake
def _(q, k, v, bias, scale):
    return q.new_empty(q.shape)


def _static(x) -> bool:
    return isinstance(x, int)


def _fusable(q, k, v) -> bool:
    """The same static leading dims, v as wide as q, a static head width of at most DMAX
    (the kernel's contract); the query and key lengths may be symbolic."""
    from sam3_tvm.lowering.attention import DMAX

    if q.dim() < 3 or not q.dim() == k.dim() == v.dim():
        return False
    if not all(_static(x) for t in (q, k, v) for x in (*t.shape[:-2], t.shape[-1])):
        return False
    return (tuple(q.shape[:-2]) == tuple(k.shape[:-2]) == tuple(v.shape[:-2])
            and q.shape[-1] == k.shape[-1] == v.shape[-1] <= DMAX and bool(k.shape[-2] == v.shape[-2]))


def _fusable_mask(mask) -> bool:
    return mask.dtype == torch.bool or mask.is_floating_point()


_FUSING = [False]


def fused_attention_enabled() -> bool:
    """True while a component is exported for the fused kernel (model code that writes its
    own attention, such as the memory attention, takes the kernel's form then)."""
    return _FUSING[0]


@contextlib.contextmanager
def _unmasked_attention_as_math(fused: bool = False):
    """Export `scaled_dot_product_attention` without a mask as matmul-softmax-matmul,
    or (`fused`, where the shapes allow; masked calls too) as one `sam3::attention` op.

    torch.export decomposes SDPA into a "safe" softmax that also checks every row
    for being all -inf (two extra full passes over the score matrix: 16x5184^2
    floats per global ViT block). Without a mask no score is -inf, so the plain
    softmax is the same function. Masked calls keep the original decomposition.

    With `fused`, `nn.MultiheadAttention` calls run with `need_weights=False`: asked for
    the weights (its default), PyTorch computes attention as bmm-softmax-bmm instead of
    SDPA; no exported component reads them (a caller that did would fail on None)."""
    import torch.nn.functional as F

    original = F.scaled_dot_product_attention
    original_mha = F.multi_head_attention_forward

    def sdpa(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, **kw):
        plain = not (dropout_p or is_causal or kw.get("enable_gqa"))
        s = scale if scale is not None else q.shape[-1] ** -0.5
        if fused and plain and _fusable(q, k, v) and (attn_mask is None or _fusable_mask(attn_mask)):
            lead = q.shape[:-2]
            flat = lambda t: t.reshape(-1, t.shape[-2], t.shape[-1])  # noqa: E731
            bias = None
            if attn_mask is not None:
                # the kernel adds a float bias: a boolean mask (True = attend) becomes 0 / -inf
                if attn_mask.dtype == torch.bool:
                    attn_mask = torch.zeros(attn_mask.shape, dtype=q.dtype).masked_fill(
                        attn_mask.logical_not(), float("-inf"))
                # a mask with one row (padding: per key) stays one row, not one per query
                per_key = attn_mask.dim() >= 2 and _static(attn_mask.shape[-2]) and attn_mask.shape[-2] == 1
                rows = 1 if per_key else q.shape[-2]
                bias = flat(attn_mask.to(q.dtype).expand(*lead, rows, k.shape[-2]))
            out = fused_attention_op(flat(q), flat(k), flat(v), bias, float(s))
            return out.reshape(*lead, q.shape[-2], q.shape[-1])
        if attn_mask is not None or not plain:
            return original(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p,
                            is_causal=is_causal, scale=scale, **kw)
        kt = k.transpose(-2, -1)
        chunks = query_blocks(q.shape, k.shape[-2])
        if chunks == 1:
            return torch.softmax((q * s) @ kt, dim=-1) @ v
        return torch.cat([torch.softmax((qc * s) @ kt, dim=-1) @ v
                          for qc in q.chunk(chunks, dim=-2)], dim=-2)

    def mha(*args, **kw):
        kw["need_weights"] = False
        return original_mha(*args, **kw)[0], None

    F.scaled_dot_product_attention = sdpa
    if fused:
        F.multi_head_attention_forward = mha
    _FUSING[0] = fused
    try:
        yield
    finally:
        F.scaled_dot_product_attention = original
        F.multi_head_attention_forward = original_mha
        _FUSING[0] = False


SCORE_CHUNK_BYTES = 64 << 20


def query_blocks(q_shape, keys: int) -> int:
    """How many query blocks an attention is split into so that no score matrix is
    larger than SCORE_CHUNK_BYTES. The ViT's global blocks score 16x5184x5184 floats
    (1.7 GB): whole, the scores and the softmax each took a buffer that size, and the
    C++ runtime peaked at 3.5x the weights. In 26 query blocks of 64 MB the buffers are
    reused from block to block (the windowed blocks' 191 MB of scores: 3 blocks).
    Rows of a softmax are independent, so the result is the same; the encoder's time
    did not change measurably (docs/performance.md)."""
    if not all(isinstance(d, int) for d in q_shape) or not isinstance(keys, int):
        return 1  # symbolic (the decoder's point count): int() would specialise it
    n = 1
    for d in q_shape:
        n *= int(d)
    rows = n // int(q_shape[-1])
    need = -(-rows * keys * 4 // SCORE_CHUNK_BYTES)
    lq = int(q_shape[-2])
    return max(1, min(need, lq))
