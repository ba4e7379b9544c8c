"""Vectorisable exp/erf legalisations (fastmath.py) against torch, incl. masked softmax."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from test_converters import _tvm_run


class Ops(torch.nn.Module):
    def forward(self, x):
        return torch.softmax(x, -1), torch.softmax(x, 1), F.gelu(x), torch.sigmoid(x), torch.exp(x)


def test_elementwise_and_softmax_match_torch():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 40, 64, generator=g) * 6  # exp over roughly [-25, 25]
    # erf's approximation is good to ~1e-7 absolute, so GELU's tail is held to an
    # absolute bound (x * 1e-7); everything else to 2e-6 relative
    for got, ref in zip(_tvm_run(Ops(), x), Ops()(x)):
        np.testing.assert_allclose(got, ref.numpy(), rtol=2e-6, atol=2e-6)


class MaskedAttention(torch.nn.Module):
    def forward(self, q, k, v, mask):
        return (F.scaled_dot_product_attention(q, k, v, attn_mask=mask),)


def test_masked_attention_keeps_safe_softmax():
    """A fully masked row must give zeros (torch's safe softmax), not NaN."""
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(1, 2, 5, 8, generator=g) for _ in range(3))
    mask = torch.rand(1, 1, 5, 5, generator=g) > 0.4
    mask[..., 2, :] = False
    mask[..., 0, 0] = True
    (got,) = _tvm_run(MaskedAttention(), q, k, v, mask)
    ref = MaskedAttention()(q, k, v, mask)[0].numpy()
    assert np.isfinite(got).all() and not got[0, :, 2].any()
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)


class Attention(torch.nn.Module):
    def forward(self, q, k, v):
        return (F.scaled_dot_product_attention(q, k, v),)


@pytest.mark.parametrize("mask", [False, True])
def test_export_writes_unmasked_attention_as_plain_softmax(mask):
    from sam3_tvm.frontend.export import _unmasked_attention_as_math

    g = torch.Generator().manual_seed(2)
    q, k, v = (torch.randn(1, 2, 6, 8, generator=g) for _ in range(3))
    args = (q, k, v) if not mask else (q, k, v, torch.ones(1, 1, 6, 6, dtype=torch.bool))
    module = Attention() if not mask else MaskedAttention()
    with _unmasked_attention_as_math():
        ep = torch.export.export(module, args)
    graph = str(ep.run_decompositions().graph)
    # unmasked: no all-(-inf) row check; masked: the safe softmax stays
    assert ("_safe_softmax" in graph or "logical_not" in graph) == mask
    np.testing.assert_allclose(ep.module()(*args)[0].numpy(), module(*args)[0].numpy(),
                               rtol=1e-5, atol=1e-6)


def test_query_blocks_bound_the_score_buffer():
    from sam3_tvm.frontend.export import SCORE_CHUNK_BYTES, query_blocks

    # global ViT block of the full model: 16 heads x 5184^2 fp32 scores = 1.72 GB
    n = query_blocks((1, 16, 5184, 64), 5184)
    assert n == -(-16 * 5184 * 5184 * 4 // SCORE_CHUNK_BYTES) > 1
    assert 16 * -(-5184 // n) * 5184 * 4 <= SCORE_CHUNK_BYTES
    assert query_blocks((1, 16, 576, 64), 576) == 1  # windowed blocks stay whole
    assert query_blocks((1, 1, 3, 64), 10**9) == 3   # never more blocks than queries
    assert query_blocks((1, 8, object(), 64), 10**9) == 1  # symbolic sizes: left whole


def test_chunked_attention_is_the_same_function(monkeypatch):
    from sam3_tvm.frontend import export

    monkeypatch.setattr(export, "SCORE_CHUNK_BYTES", 2 * 7 * 4 * 4)  # 2 heads x 4 queries x 7 keys
    g = torch.Generator().manual_seed(3)
    q = torch.randn(1, 2, 10, 8, generator=g)
    k, v = torch.randn(1, 2, 7, 8, generator=g), torch.randn(1, 2, 7, 8, generator=g)
    with export._unmasked_attention_as_math():
        ep = torch.export.export(Attention(), (q, k, v))
    graph = str(ep.graph)
    assert graph.count("target=torch.ops.aten.softmax") == 3  # ceil(10 / 4) query blocks
    np.testing.assert_allclose(ep.module()(q, k, v)[0].numpy(),
                               F.scaled_dot_product_attention(q, k, v).numpy(), rtol=1e-5, atol=1e-6)
