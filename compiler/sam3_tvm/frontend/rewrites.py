"""Relax graph rewrites applied right after import (before lifting and scheduling).

`fold_broadcast_weights`: torch's matmul decomposition writes `x[B, M, K] @ W[K, N]`
with a non-contiguous `x` (e.g. the grounding head's fusion encoder, whose tokens are
[5184, 1, 256], sequence first) as `bmm(x, expand(W, [B, K, N]))`. Imported literally,
every call of each of its 6 layers wrote the weight out 5184 times (a 1.36 GB tensor:
0.68 s of the 3.2 s text prompt, and two 1.36 GB buffers in the runtime's memory plan).
A weight broadcast over batch dims is the same weight for every row, so this is one
GEMM: `reshape(reshape(x, [B*M, K]) @ W, [B, M, N])`.

`activation_before_reshape`: torch's linear on a [B, H, W, C] tensor exports as reshape
-> matmul -> add -> reshape, and the activation follows the last reshape. FuseOps
fuses a matmul with the elementwise ops after it but stops at a reshape, so GELU was a
kernel of its own: the ViT's MLP wrote its 5184 x 4736 hidden layer twice (0.74 s of the
full encoder, and a second 98 MB buffer). An elementwise op commutes with a reshape;
moved before it, it joins the matmul's epilogue (schedule.py folds the epilogue into
the GEMM's loop nest).
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


ELEMENTWISE = ("relax.nn.gelu", "relax.nn.gelu_tanh", "relax.nn.relu", "relax.nn.silu",
               "relax.sigmoid")


def activation_before_reshape(mod: tvm.IRModule) -> tvm.IRModule:
    x, shape = wildcard(), wildcard()
    reshaped = is_op("relax.reshape")(x, shape)
    pattern = is_op(ELEMENTWISE[0])(reshaped)
    for name in ELEMENTWISE[1:]:
        pattern |= is_op(name)(reshaped)

    def rewrite(expr, m):
        # the same op on the reshape's input (attributes and all), then the reshape
        return relax.op.reshape(relax.Call(expr.op, [m[x]], expr.attrs), m[shape])

    # the moved reshape usually meets the next linear's flattening reshape: one reshape
    # (two in a row are fused into a copy kernel: 0.33 s of the full encoder)
    y, s1, s2 = wildcard(), wildcard(), wildcard()
    twice = is_op("relax.reshape")(is_op("relax.reshape")(y, s1), s2)

    out = tvm.IRModule(dict(mod.functions), attrs=mod.attrs)
    for gv, func in mod.functions.items():
        if isinstance(func, relax.Function):
            func = rewrite_call(pattern, rewrite, func)
            out[gv] = rewrite_call(twice, lambda expr, m: relax.op.reshape(m[y], m[s2]), func)
    return out
