"""Relax graph rewrites applied right after import (before lifting and scheduling).

`fold_broadcast_weights`: torch's matmul decomposition writes `x[B, M, K] @ W[K, N]`
with a non-contiguous `x` (e.g. the grounding head's fusion encoder, whose tokens are
[5184, 1, 256], sequence first) as `bmm(x, expand(W, [B, K, N]))`. Imported literally,
every call of each of its 6 layers wrote the weight out 5184 times (a 1.36 GB tensor:
0.68 s of the 3.2 s text prompt, and two 1.36 GB buffers in the runtime's memory plan).
A weight broadcast over batch dims is the same weight for every row, so this is one
GEMM: `reshape(reshape(x, [B*M, K]) @ W, [B, M, N])`.
"""

from __future__ import annotations

import tvm
from tvm import relax, tirx
from tvm.relax.dpl import is_op, rewrite_call, wildcard


def static_shape(expr):
    """The expression's shape as ints, or None when it is not a fully static tensor."""
    shape = getattr(expr.ty, "shape", None)
    if shape is None or not all(isinstance(d, tirx.IntImm) for d in shape):
        return None
    return [int(d) for d in shape]


def fold_broadcast_weights(mod: tvm.IRModule) -> tvm.IRModule:
    x, w, target = wildcard(), wildcard(), wildcard()
    bcast = is_op("relax.broadcast_to")(w, target)
    pattern = is_op("relax.matmul")(x, bcast)

    def rewrite(expr, m):
        xs, ws, out = static_shape(m[x]), static_shape(m[w]), static_shape(expr)
        if xs is None or ws is None or out is None or len(ws) != 2 or len(xs) < 2:
            return expr
        k, n = ws
        # only a broadcast over batch dims, and x supplies every batch row itself
        if xs[-1] != k or (static_shape(m[bcast]) or [])[-2:] != ws or out != xs[:-1] + [n]:
            return expr
        rows = 1
        for d in xs[:-1]:
            rows *= d
        y = relax.op.matmul(relax.op.reshape(m[x], [rows, k]), m[w])
        return relax.op.reshape(y, out)

    out = tvm.IRModule(dict(mod.functions), attrs=mod.attrs)
    for gv, func in mod.functions.items():
        if isinstance(func, relax.Function):
            out[gv] = rewrite_call(pattern, rewrite, func)
    return out
