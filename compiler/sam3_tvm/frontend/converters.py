"""Fixes to TVM's torch.export importer, passed as `custom_convert_map`.

Each converter is one small unit with its own test (tests/python/test_converters.py).
They are called as `fn(node, importer)` by `from_exported_program`.
"""

from __future__ import annotations

import torch
import tvm
from tvm import relax


def _out_dtype(node) -> str:
    """The dtype torch computed for this node's output (from export's fake tensor)."""
    return str(node.meta["val"].dtype).replace("torch.", "")


def _as(importer, x, dtype: str):
    if isinstance(x, relax.Expr):
        if str(x.ty.dtype) != dtype:
            x = importer.block_builder.emit(relax.op.astype(x, dtype))
        return x
    return relax.const(x, dtype)


def grid_sampler_2d(node, importer):
    """torch's grid is [N,Hout,Wout,2]; Relax's grid_sample wants [N,2,Hout,Wout]
    (the stock converter passes it unpermuted). Also: SAM 3's geometry encoder
    samples an empty point grid on text/box-only prompts; emit the empty (or
    all-zero) result directly instead of a zero-extent kernel."""
    args = importer.retrieve_args(node)
    data, grid = args[0], args[1]
    mode = {0: "bilinear", 1: "nearest", 2: "bicubic"}[args[2] if len(args) > 2 else 0]
    pad = {0: "zeros", 1: "border", 2: "reflection"}[args[3] if len(args) > 3 else 0]
    align = bool(args[4]) if len(args) > 4 else False
    out_shape = tuple(int(d) for d in node.meta["val"].shape)
    if 0 in out_shape:
        # An empty slice of the input, not a constant: FoldConstant would turn
        # zeros() into a zero-size constant, which the VM cannot serialise.
        in_shape = tuple(int(d) for d in args[0].ty.shape)
        if out_shape[2] <= in_shape[2] and out_shape[3] <= in_shape[3]:
            return importer.block_builder.emit(relax.op.strided_slice(
                data, axes=[2, 3], begin=[0, 0], end=[out_shape[2], out_shape[3]]))
        return importer.block_builder.emit(relax.op.zeros(out_shape, _out_dtype(node)))
    grid = importer.block_builder.emit(relax.op.permute_dims(grid, [0, 3, 1, 2]))
    return importer.block_builder.emit(relax.op.image.grid_sample(
        data, grid, method=mode, layout="NCHW", padding_mode=pad, align_corners=align))


def floor_divide(node, importer):
    """`float_tensor // 2` imports as float // int32-const and fails Relax's same-dtype
    check; promote both operands to torch's result dtype first."""
    lhs, rhs = importer.retrieve_args(node)[:2]
    dtype = _out_dtype(node)
    return importer.block_builder.emit(
        relax.op.floor_divide(_as(importer, lhs, dtype), _as(importer, rhs, dtype)))


def div_mode(node, importer):
    """`torch.div(x, y, rounding_mode=...)` (what `x // 2` decomposes to): promote
    both operands to torch's result dtype, then floor/trunc/true divide."""
    args = importer.retrieve_args(node)
    lhs, rhs = args[0], args[1]
    mode = node.kwargs.get("rounding_mode", args[2] if len(args) > 2 else None)
    dtype = _out_dtype(node)
    lhs, rhs = _as(importer, lhs, dtype), _as(importer, rhs, dtype)
    bb = importer.block_builder
    if mode == "floor":
        return bb.emit(relax.op.floor_divide(lhs, rhs))
    if mode == "trunc":
        if dtype.startswith("float"):
            return bb.emit(relax.op.trunc(bb.emit(relax.op.divide(lhs, rhs))))
        return bb.emit(relax.op.divide(lhs, rhs))  # integer divide truncates in TIR
    return bb.emit(relax.op.divide(lhs, rhs))


def select(node, importer):
    """`x.select(dim, -1)` (e.g. `hs[-1]`): the stock converter emits
    `take(x, -1)`, which legalises to an unchecked out-of-bounds read. Wrap
    negative indices with the static size of the dimension first."""
    x = importer.env[node.args[0]]
    dim, index = node.args[1], node.args[2]
    in_shape = node.args[0].meta["val"].shape
    dim = dim % len(in_shape)
    if index < 0:
        index += int(in_shape[dim])
    return importer.block_builder.emit(relax.op.take(x, relax.const(index, "int64"), dim))


def cat(node, importer):
    """torch.cat type-promotes mixed inputs (e.g. int32 labels with float padding
    in SAM's prompt encoder); Relax concat requires one dtype. Promote first."""
    args = importer.retrieve_args(node)
    axis = args[1] if len(args) > 1 else node.kwargs.get("dim", 0)
    dtype = _out_dtype(node)
    # SAM 3 concatenates empty sequences (no points, no visual prompt); a
    # zero-size constant cannot be serialised in a VM executable, so drop them.
    parts = [(t, a) for t, a in zip(args[0], node.args[0])
             if not (hasattr(a, "meta") and a.meta["val"].numel() == 0)]
    if not parts:
        return importer.block_builder.emit(relax.op.zeros(tuple(node.meta["val"].shape), dtype))
    tensors = [_as(importer, t, dtype) for t, _ in parts]
    if len(tensors) == 1:
        return tensors[0]
    return importer.block_builder.emit(relax.op.concat(tensors, axis=axis))


def group_norm(stats_dtype: str = "float64"):
    """TVM's group_norm computes its statistics with plain fp32 sums: over a
    32-channel group of a 288x288 map (2.6M values, SAM 3's pixel decoder) that
    is 1.2e-3 relative error against a float64 reference (torch: 6e-8). Compute
    mean and variance in `stats_dtype` (two-pass), normalise, and return fp32.
    float64 by default; fp16 and Metal builds use float32 (two-pass, still better
    than the one-pass sums): ToMixedPrecision rejects float64, Metal has none."""

    def native_group_norm(node, importer):
        from tvm import te

        bb = importer.block_builder
        x = importer.env[node.args[0]]
        gamma = importer.env.get(node.args[1]) if node.args[1] is not None else None
        beta = importer.env.get(node.args[2]) if node.args[2] is not None else None
        groups, eps = int(node.args[6]), float(node.args[7])
        shape = [int(d) for d in node.args[0].meta["val"].shape]
        n, c = shape[0], shape[1]
        dtype = _out_dtype(node) if not isinstance(node.meta["val"], (tuple, list)) else \
            str(node.meta["val"][0].dtype).replace("torch.", "")
        xg = bb.emit(relax.op.reshape(x, [n, groups, -1]))
        size = 1
        for d in shape[1:]:
            size *= d
        size //= groups

        # The statistics as reductions that widen each value as they read it: as Relax
        # ops, FuseOps put the widening cast into the producer's kernel and the shared
        # float64 map and deviations were materialised (2 x 170 MB at the pixel
        # decoder's 288x288, 0.34 GB of the grounding head's workspace).
        def average(term, name):
            i = te.reduce_axis((0, size), "i")
            total = te.compute((n, groups, 1), lambda b, g, _: te.sum(term(b, g, i), axis=i),
                               name=name + "_sum")
            return te.compute((n, groups, 1), lambda b, g, z: total[b, g, z] / size, name=name)

        def mean_of(xs):
            return average(lambda b, g, i: xs[b, g, i].astype(stats_dtype), "group_mean")

        def var_of(xs, m):
            def sq(b, g, i):
                d = xs[b, g, i].astype(stats_dtype) - m[b, g, 0]
                return d * d
            return average(sq, "group_var")

        mean = bb.emit_te(mean_of, xg, primfunc_name_hint="group_mean")
        var = bb.emit_te(var_of, xg, mean, primfunc_name_hint="group_var")
        rstd = bb.emit(relax.op.rsqrt(bb.emit(relax.op.add(var, relax.const(eps, stats_dtype)))))
        dev = bb.emit(relax.op.subtract(_as(importer, xg, stats_dtype), mean))
        y = _as(importer, bb.emit(relax.op.multiply(dev, rstd)), dtype)
        y = bb.emit(relax.op.reshape(y, shape))
        affine = [1, c] + [1] * (len(shape) - 2)
        if gamma is not None:
            y = bb.emit(relax.op.multiply(y, bb.emit(relax.op.reshape(gamma, affine))))
        if beta is not None:
            y = bb.emit(relax.op.add(y, bb.emit(relax.op.reshape(beta, affine))))
        return y

    return native_group_norm


native_group_norm = group_norm("float64")


def convolution(node, importer, one_kernel_same_conv: bool = False):
    """`aten.convolution` (what export decomposes every conv to). Four shapes SAM 3
    uses are imported as matmuls, which the GEMM rule runs near peak; every other
    convolution keeps the stock path:

    - transposed, kernel == stride (FPN neck, 2x2 s2): `_unshuffle_matmul`;
    - 1x1: `_pointwise_matmul`;
    - kernel == stride, no padding (ViT patch embedding): `_patchify_matmul`;
    - stride-1 "same" on a large map (3x3 in the neck / pixel decoder): `_shifted_matmuls`,
      or with `one_kernel_same_conv` (CPU builds) `_shifted_taps_kernel`.
    """
    args = importer.retrieve_args(node)
    x, w = args[0], args[1]
    bias = args[2] if len(args) > 2 else None
    pair = lambda v: tuple(int(e) for e in v) if isinstance(v, (list, tuple)) else (int(v),) * 2  # noqa: E731
    stride, padding, dilation = pair(args[3]), pair(args[4]), pair(args[5])
    transposed, out_pad, groups = bool(args[6]), pair(args[7]), int(args[8])
    if len(node.args[0].meta["val"].shape) != 4 or groups != 1 or dilation != (1, 1):
        return importer._convolution(node)
    n, _, h, wd = (int(d) for d in node.args[0].meta["val"].shape)
    wshape = tuple(int(d) for d in node.args[1].meta["val"].shape)
    k = wshape[2:]
    bb = importer.block_builder
    if transposed:
        lower = _unshuffle_matmul if k == stride and not any(padding) and not any(out_pad) else None
        co = wshape[1]
    else:
        co = wshape[0]
        if k == (1, 1) and stride == (1, 1) and not any(padding):
            lower = _pointwise_matmul
        elif k == stride and not any(padding) and h % k[0] == 0 and wd % k[1] == 0:
            lower = _patchify_matmul
        elif (stride == (1, 1) and k == (2 * padding[0] + 1, 2 * padding[1] + 1)
              and h * wd >= SHIFTED_CONV_MIN_PIXELS):
            lower = _shifted_taps_kernel if one_kernel_same_conv else _shifted_matmuls
        else:
            lower = None
    if lower is None:
        return importer._convolution(node)
    y = lower(bb, x, w, wshape, (n, h, wd), padding)
    if bias is not None:
        y = bb.emit(relax.op.add(y, bb.emit(relax.op.reshape(bias, [1, co, 1, 1]))))
    return y


def _unshuffle_matmul(bb, x, w, wshape, nhw, padding):
    """A transposed conv whose kernel equals its stride writes each output pixel from
    exactly one input pixel: a matmul [N*H*W, Ci] x [Ci, Co*kh*kw] and a pixel
    shuffle. TVM lowers it as a convolution over a zero-dilated input instead (3/4
    of the multiply-adds hit zeros, and the dilated input defeats the conv
    schedule): 2.7 s vs 0.1-0.2 s in PyTorch for one 1024->512 layer at 72x72."""
    ci, co, kh, kw = wshape
    n, h, wd = nhw
    rows = bb.emit(relax.op.reshape(bb.emit(relax.op.permute_dims(x, [0, 2, 3, 1])), [n * h * wd, ci]))
    y = bb.emit(relax.op.matmul(rows, bb.emit(relax.op.reshape(w, [ci, co * kh * kw]))))
    y = bb.emit(relax.op.reshape(y, [n, h, wd, co, kh, kw]))
    y = bb.emit(relax.op.permute_dims(y, [0, 3, 1, 4, 2, 5]))
    return bb.emit(relax.op.reshape(y, [n, co, h * kh, wd * kw]))


def _pointwise_matmul(bb, x, w, wshape, nhw, padding):
    """A 1x1 convolution in NCHW is W[Co,Ci] @ X[Ci,H*W] per image: a plain matmul
    whose output is already NCHW. The conv schedule managed 16 GFLOP/s on SAM 3's
    256->256 1x1 at 288x288, the matmul rule ~200."""
    co, ci = wshape[:2]
    n, h, wd = nhw
    y = bb.emit(relax.op.matmul(bb.emit(relax.op.reshape(w, [co, ci])),
                                bb.emit(relax.op.reshape(x, [n, ci, h * wd]))))
    return bb.emit(relax.op.reshape(y, [n, co, h, wd]))


def _patchify_matmul(bb, x, w, wshape, nhw, padding):
    """A convolution whose stride equals its kernel (the ViT's 14x14 patch embedding)
    reads every input pixel once: cut the image into patches and multiply by the
    flattened kernel, [N*Ho*Wo, Ci*kh*kw] x [Ci*kh*kw, Co]. As TVM's conv2d with our
    schedule, the full model's patch embedding (6.2 GFLOP) took 0.64 s."""
    co, ci, kh, kw = wshape
    n, h, wd = nhw
    ho, wo = h // kh, wd // kw
    p = bb.emit(relax.op.reshape(x, [n, ci, ho, kh, wo, kw]))
    p = bb.emit(relax.op.permute_dims(p, [0, 2, 4, 1, 3, 5]))
    p = bb.emit(relax.op.reshape(p, [n * ho * wo, ci * kh * kw]))
    y = bb.emit(relax.op.matmul(p, bb.emit(relax.op.permute_dims(
        bb.emit(relax.op.reshape(w, [co, ci * kh * kw]))))))
    return bb.emit(relax.op.permute_dims(bb.emit(relax.op.reshape(y, [n, ho, wo, co])), [0, 3, 1, 2]))


SHIFTED_CONV_MIN_PIXELS = 64 * 64


def _padded_rows(bb, x, ci, nhw, padding):
    """The "same" convolutions' input: padded, each image flattened with the padded row
    stride (returned too). One extra padded row at the bottom keeps the last tap's
    window in bounds."""
    n, h, wd = nhw
    ph, pw = padding
    row = wd + 2 * pw
    xp = bb.emit(relax.op.nn.pad(x, [0, 0, 0, 0, ph, ph + 1, pw, pw]))
    return bb.emit(relax.op.reshape(xp, [n, ci, (h + 2 * ph + 1) * row])), row


def _without_pad_columns(bb, y, co, nhw, row):
    """[n, co, h * row] -> [n, co, h, w]: each output row's extra padded columns dropped."""
    n, h, wd = nhw
    y = bb.emit(relax.op.reshape(y, [n, co, h, row]))
    return bb.emit(relax.op.strided_slice(y, axes=[3], begin=[0], end=[wd]))


def _shifted_matmuls(bb, x, w, wshape, nhw, padding):
    """A stride-1 "same" convolution on a large map as kh*kw matmuls over shifted
    windows of the padded input, flattened with the padded row stride: tap (i, j)
    reads x_pad[ci, r*(W+2p) + c + i*(W+2p) + j], one contiguous window per tap.
    Each output row then has 2p extra columns, dropped at the end. SAM 3's 3x3
    256->256 convs at 288x288 (FPN neck, pixel decoder): 1.48 s as TVM's conv2d
    with our schedule, 0.59 s this way (torch/oneDNN 0.26 s)."""
    co, ci, kh, kw = wshape
    h = nhw[1]
    flat, row = _padded_rows(bb, x, ci, nhw, padding)
    acc = None
    for i in range(kh):
        for j in range(kw):
            start = i * row + j
            win = bb.emit(relax.op.strided_slice(flat, axes=[2], begin=[start], end=[start + h * row]))
            tap = bb.emit(relax.op.reshape(
                bb.emit(relax.op.strided_slice(w, axes=[2, 3], begin=[i, j], end=[i + 1, j + 1])),
                [co, ci]))
            y = bb.emit(relax.op.matmul(tap, win))
            acc = y if acc is None else bb.emit(relax.op.add(acc, y))
    return _without_pad_columns(bb, acc, co, nhw, row)


def _shifted_taps_kernel(bb, x, w, wshape, nhw, padding):
    """`_shifted_matmuls` as one kernel: out[co, p] = sum over taps t and channels ci of
    W[co, t, ci] * x_pad_flat[ci, p + offset(t)], a contraction over (t, ci) that the
    GEMM rule tiles like a matmul (register tile over co, vectors along p, the shifted
    windows read in place). The nine-matmul form keeps every tap's product alive until
    one fused sum at the end, plus a copied window per tap: for the 256->256 3x3 at
    288x288 that is 9 x 85 MB, 0.77 GB of the image encoder's 0.94 GB planned
    workspace. This way: the padded input and the output only; 0.51 s against 0.67 s
    (PyTorch/oneDNN 0.51 s; Zen 4, 2 threads). CPU builds only: the GPU schedules
    (DLight) know matmuls, not this two-axis reduction."""
    from tvm import te

    co, ci, kh, kw = wshape
    n, h, _ = nhw
    flat, row = _padded_rows(bb, x, ci, nhw, padding)
    taps = bb.emit(relax.op.reshape(bb.emit(relax.op.permute_dims(w, [0, 2, 3, 1])),
                                    [co, kh * kw, ci]))

    def conv(xf, wt):
        t = te.reduce_axis((0, kh * kw), "t")
        c = te.reduce_axis((0, ci), "c")
        return te.compute((n, co, h * row), lambda b, o, p: te.sum(
            wt[o, t, c] * xf[b, c, p + (t // kw) * row + t % kw], axis=[t, c]), name="same_conv")

    # the attribute lets conv_f32.same_convs swap in its C kernel where that is faster
    length = (h + kh) * row  # _padded_rows: ph above, ph + 1 below, kh = 2 ph + 1
    y = bb.emit_te(conv, flat, taps, primfunc_name_hint="same_conv",
                   primfunc_attrs={"sam3.same_conv": [n, ci, length, co, kh * kw, h * row, kw, row]})
    return _without_pad_columns(bb, y, co, nhw, row)


def amax(node, importer):
    """`amax(x, dim, keepdim)`: missing from the 0.27 importer (`max.dim` maps to topk,
    which sorts); a plain max reduction (the memory attention's softmax row max)."""
    args = importer.retrieve_args(node)
    dims = args[1] if len(args) > 1 else node.kwargs.get("dim", None)
    keepdim = args[2] if len(args) > 2 else node.kwargs.get("keepdim", False)
    axis = None if dims is None or dims == [] else ([dims] if isinstance(dims, int) else list(dims))
    return importer.block_builder.emit(relax.op.max(args[0], axis=axis, keepdims=bool(keepdim)))


def attention(node, importer):
    """`sam3::attention(q, k, v, bias, scale)` (export.py, CPU targets): the fused kernel
    of lowering/attention.py as a call_tir (with the bias as a fourth input if given: one
    row per query, or one row of per-key terms). Query and key lengths may be symbolic."""
    from sam3_tvm.lowering.attention import attention_func

    q, k, v, bias, scale = importer.retrieve_args(node)
    n, d = int(q.ty.shape[0]), int(q.ty.shape[2])
    lq, lk = q.ty.shape[1], k.ty.shape[1]
    static = lambda x: int(x) if isinstance(x, tvm.tirx.IntImm) else None  # noqa: E731
    mode = None
    if bias is not None:
        per_key = isinstance(bias.ty.shape[1], tvm.tirx.IntImm) and int(bias.ty.shape[1]) == 1 \
            and static(lq) != 1
        mode = "keys" if per_key else "rows"
    bb = importer.block_builder
    label = lambda x: str(static(x)) if static(x) is not None else "n"  # noqa: E731
    tag = {None: "", "rows": "_bias", "keys": "_keybias"}[mode]
    name = f"sam3_attention{tag}_{n}_{label(lq)}_{label(lk)}_{d}"
    gv = bb.add_func(attention_func(n, static(lq), static(lk), d, float(scale), bias=mode), name)
    # the kernel reads the keys transposed ([n, d, lk]); one transpose here instead of one
    # per block of queries inside the kernel
    kt = bb.emit(relax.op.permute_dims(k, [0, 2, 1]))
    args = [q, kt, v] + ([bias] if mode else [])
    return bb.emit(relax.call_tir(gv, args, relax.TensorType((n, lq, d), "float32")))


CONVERTERS = {
    "attention.default": attention,
    "amax.default": amax,
    "native_group_norm.default": native_group_norm,
    "grid_sampler_2d.default": grid_sampler_2d,
    "floor_divide.default": floor_divide,
    "div.Tensor_mode": div_mode,
    "cat.default": cat,
    "select.int": select,
    "convolution.default": convolution,
}


def clamp_min_max(node, importer):
    """`clamp(x, lo, hi)` as maximum/minimum with tensor constants. The stock
    converter's `R.clip` takes its bounds as float64 scalars, which TVM's
    ToMixedPrecision rejects ("Expected TensorType, but got T.float64"), and
    Metal has no float64; used for those builds only, so other bundles keep the
    stock lowering."""
    args = importer.retrieve_args(node)
    x = args[0]
    lo = args[1] if len(args) > 1 else node.kwargs.get("min")
    hi = args[2] if len(args) > 2 else node.kwargs.get("max")
    dtype = _out_dtype(node)
    bb = importer.block_builder
    if lo is not None:
        x = bb.emit(relax.op.maximum(x, _as(importer, lo, dtype)))
    if hi is not None:
        x = bb.emit(relax.op.minimum(x, _as(importer, hi, dtype)))
    return x


def converters(no_float64: bool = False, cpu: bool = False) -> dict:
    """The converter map; `no_float64`: the variants for builds that cannot use
    float64 (fp16 mixed precision; Metal, which has no float64): GroupNorm
    statistics in float32, clamp without float64 scalars. `cpu`: the lowerings written
    for our CPU schedules (same convolutions as one kernel)."""
    out = dict(CONVERTERS)
    if cpu:
        out["convolution.default"] = lambda node, importer: convolution(
            node, importer, one_kernel_same_conv=True)
    if no_float64:
        out.update({"native_group_norm.default": group_norm("float32"),
                    "clamp.default": clamp_min_max})
    return out
