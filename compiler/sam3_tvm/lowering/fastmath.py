"""Vectorisable exp/erf for CPU kernels (legalisations used instead of TVM's defaults).

TVM lowers `T.exp` / `T.erf` to LLVM's math intrinsics, which LLVM turns into one
libm call per element: a vectorised softmax or GELU loop still runs scalar code
(the global-attention softmax alone took 8.8 s of the image encoder). TOPI's
`fast_exp` / `fast_erf` are polynomial approximations built from plain arithmetic,
so LLVM vectorises them (relative error ~1e-7, below the fp32 parity tolerance).

`legalize()` legalises softmax, GELU, sigmoid and exp with them; everything else
keeps TVM's default legalisation.
"""

from __future__ import annotations

from tvm import relax, te, tirx, topi


def _softmax(x: te.Tensor, axis: int) -> te.Tensor:
    axis = axis % len(x.shape)
    mx = topi.max(x, axis=axis, keepdims=True)
    shifted = te.compute(x.shape, lambda *i: x(*i) - mx(*_at0(i, axis)), name="T_softmax_shift")
    e = topi.fast_exp(shifted)
    s = topi.sum(e, axis=axis, keepdims=True)
    return te.compute(x.shape, lambda *i: e(*i) / s(*_at0(i, axis)), name="T_softmax_norm")


def _at0(idx, axis):
    return tuple(0 if d == axis else v for d, v in enumerate(idx))


def _gelu(x: te.Tensor) -> te.Tensor:
    half = tirx.const(0.5, x.dtype)
    erf = topi.fast_erf(topi.multiply(x, tirx.const(0.5**0.5, x.dtype)))
    return te.compute(x.shape, lambda *i: x(*i) * (half + erf(*i) * half), name="T_gelu")


def _sigmoid(x: te.Tensor) -> te.Tensor:
    e = topi.fast_exp(topi.negative(x))
    one = tirx.const(1.0, x.dtype)
    return te.compute(x.shape, lambda *i: one / (one + e(*i)), name="T_sigmoid")


def _f32(call) -> bool:
    return str(call.args[0].ty.dtype) == "float32"


def _softmax_rule(bb, call):
    if not _f32(call):
        return None
    return bb.call_te(_softmax, call.args[0], int(call.attrs.axis), primfunc_name_hint="softmax")


def _unary(fn, hint):
    def rule(bb, call):
        return bb.call_te(fn, call.args[0], primfunc_name_hint=hint) if _f32(call) else None
    return rule


RULES = {
    "relax.nn.softmax": _softmax_rule,
    "relax.nn.gelu": _unary(_gelu, "gelu"),
    "relax.sigmoid": _unary(_sigmoid, "sigmoid"),
    "relax.exp": _unary(topi.fast_exp, "exp"),
}


def legalize():
    """LegalizeOps with the fast rules (fp32 only; other dtypes keep TVM's rule)."""
    import tvm

    def wrap(rule, name):
        default = tvm.ir.Op.get(name).get_attr("FLegalize")

        def fn(bb, call):
            out = rule(bb, call)
            return out if out is not None else default(bb, call)
        return fn

    return relax.transform.LegalizeOps(customize_legalize_map={k: wrap(v, k) for k, v in RULES.items()})
