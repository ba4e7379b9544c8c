"""Rewrite the ViT's complex-number RoPE in real arithmetic (TVM has no complex dtype).

`sam3.model.vitdet.apply_rotary_enc` views (q, k) as complex pairs (2i, 2i+1),
multiplies by the complex64 buffer `freqs_cis` and views back as real. For a
pair (x0, x1) and freqs = cos + i·sin this is
    out0 = x0·cos − x1·sin,   out1 = x0·sin + x1·cos,
computed here in fp32 like the original (`xq.float()`). `realify(model)`
replaces each complex buffer by real `rope_cos`/`rope_sin` buffers, after any
checkpoint has been loaded (the checkpoint carries `freqs_cis`).
"""

from __future__ import annotations

import types

import torch


def rotate_pairs(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate interleaved pairs of the last dim of x [..., L, D] by angles [L, D/2]."""
    xf = x.float().reshape(*x.shape[:-1], -1, 2)
    x0, x1 = xf[..., 0], xf[..., 1]
    out = torch.stack([x0 * cos - x1 * sin, x0 * sin + x1 * cos], dim=-1)
    return out.flatten(-2).type_as(x)


def _apply_rope_real(self, q, k):
    if not self.use_rope:
        return q, k
    q = rotate_pairs(q, self.rope_cos, self.rope_sin)
    k = rotate_pairs(k, self.rope_cos, self.rope_sin) if k.shape[-2] != 0 else k
    return q, k


def realify(model: torch.nn.Module) -> int:
    """Swap every vitdet Attention's complex RoPE for the real one; return how many."""
    from sam3.model import vitdet

    count = 0
    for module in model.modules():
        if not isinstance(module, vitdet.Attention):
            continue
        freqs = getattr(module, "freqs_cis", None)
        if freqs is None or not torch.is_complex(freqs):
            continue
        del module._buffers["freqs_cis"]
        module.freqs_cis = None
        module.register_buffer("rope_cos", freqs.real.float().contiguous(), persistent=False)
        module.register_buffer("rope_sin", freqs.imag.float().contiguous(), persistent=False)
        module._apply_rope = types.MethodType(_apply_rope_real, module)
        count += 1
    return count
