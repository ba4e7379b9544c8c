"""The stride-1 "same" convolutions (3x3 in the FPN neck and the pixel decoder) as a C
kernel on packed pixel panels, for the CPUs `linear_f32.kind_for` gives a tile (AVX-512
Intel; AVX2 builds).

The importer (converters._shifted_taps_kernel) writes each such convolution as one
contraction, out[co, p] = sum over taps t and channels c of W[co, t, c] *
x_pad[c, p + offset(t)], with the padded input flattened by its padded row stride. Our
GEMM rule runs that near peak on Zen 4 (0.51 s for the 256->256 3x3 at 288x288, as
oneDNN), but on the Intel Xeon of docs/performance.md at 129-139 GFLOP/s: each step of
the reduction reads 64 pixels of another channel plane, 337 KB further, so every step
lands on a new page and the k walk has no locality.

Here each 64-pixel block first copies its window of every (tap, channel), K = taps * ci
rows of 64 floats (590 KB for ci = 256: it stays in L2), then runs linear_f32's 6x64
register tile over it (AVX2: four 6x16 tiles, the panel as four 16-pixel sub-panels) for
6 output channels at a time, W's rows read in place. The sums
run in (tap, channel) order in fp32, as the contraction's (rounding-level differences
from TVM's reduction order). The bias stays a separate add after the kernel.
"""

from __future__ import annotations

import tvm
from tvm import relax
from tvm.script import tirx as T

from sam3_tvm.lowering import linear_f32

ATTR = "sam3.same_conv"  # on the importer's PrimFunc: conv_func's arguments
BLOCK = 64               # output pixels per block (one tile width)
KERNEL_ATTACHED = "sam3.same_conv_kernel"  # module attribute: the C module is attached

C_SOURCE = r"""
/* All output channels of the 64-pixel block at p0 (fewer at the end) of one image:
   out[o, p0 + j] = sum_{t, c} w[o, t, c] * x[c, p0 + j + (t / kw) * row + t % kw].
   panel: room for taps * ci * 64 floats, as 64 / SUB sub-panels [k][SUB] (one for the
   AVX-512 tile, 64 columns wide; four for the AVX2 tile, 16 wide). */
SAM3_CONV_TARGET
int32_t sam3_same_conv_block(float* out, const float* x, const float* w, float* panel,
                             int64_t co, int64_t ci, int64_t taps, int64_t kw, int64_t row,
                             int64_t plane, int64_t npix, int64_t p0) {
  int64_t k = taps * ci, width = npix - p0 < 64 ? npix - p0 : 64;
  for (int64_t t = 0; t < taps; ++t) {
    const float* src = x + p0 + (t / kw) * row + t % kw;
    for (int64_t c = 0; c < ci; ++c) {
      const float* s = src + c * plane;
      for (int64_t q = 0; q < 64 / SUB; ++q) {
        float* dst = panel + (q * k + t * ci + c) * SUB;
        if (width == 64) {
          memcpy(dst, s + q * SUB, SUB * sizeof(float));
        } else {
          for (int64_t j = 0; j < SUB; ++j) dst[j] = q * SUB + j < width ? s[q * SUB + j] : 0.0f;
        }
      }
    }
  }
  float part[6 * 64]; /* a partial block's tile, before its valid columns are copied */
  for (int64_t o = 0; o < co; o += 6) {
    int64_t rows = co - o < 6 ? co - o : 6;
    const float* a = w + o * k;
    for (int64_t q = 0; q < 64 / SUB; ++q) {
      float* c = (width == 64 ? out + o * npix + p0 : part) + q * SUB;
      int64_t ldc = width == 64 ? npix : 64;
      const float* b = panel + q * k * SUB;
      switch (rows) {
        case 1: TILE(1, c, ldc, a, k, b); break;
        case 2: TILE(2, c, ldc, a, k, b); break;
        case 3: TILE(3, c, ldc, a, k, b); break;
        case 4: TILE(4, c, ldc, a, k, b); break;
        case 5: TILE(5, c, ldc, a, k, b); break;
        default: TILE(6, c, ldc, a, k, b); break;
      }
    }
    if (width < 64)
      for (int64_t r = 0; r < rows; ++r) memcpy(out + (o + r) * npix + p0, part + r * 64, width * 4);
  }
  return 0;
}

#ifdef __cplusplus
}
#endif
"""
# c[r, :SUB] = sum_k a[r, k] * b[k, :SUB] for the R rows of one tile, no bias, no GELU
AVX512 = r"""
#define SAM3_CONV_TARGET __attribute__((target("avx512f,avx512dq,fma")))
#define SUB 64
#define TILE(R, c, ldc, a, k, b) sam3_f32_tile_##R(c, ldc, a, k, b, k, 0, 1, 0)
"""
AVX2 = r"""
#define SAM3_CONV_TARGET __attribute__((target("avx2,fma")))
#define SUB 16
#define TILE(R, c, ldc, a, k, b) sam3_f32x8_tile_##R(c, ldc, a, k, b, k, 0, 0)
"""


def supported(target) -> bool:
    """The targets with a packed fp32 tile (linear_f32.kind_for)."""
    return linear_f32.kind_for(target) is not None


def c_source(avx2: bool = False) -> str:
    """The kernel's C, with linear_f32's AVX-512 tiles or its AVX2 ones."""
    tiles = linear_f32.avx2_tile_source() + AVX2 if avx2 else linear_f32.tile_source() + AVX512
    return tiles + C_SOURCE


def c_module(avx2: bool = False):
    """The kernel as a C source module for `export_library`."""
    create = tvm.get_global_func("runtime.CSourceModuleCreate")
    return create(c_source(avx2), "c", ["sam3_same_conv_block"], [])


def conv_func(n: int, ci: int, length: int, co: int, taps: int, npix: int, kw: int, row: int):
    """out[n, co, npix] from the padded, flattened input x[n, ci, length] and the taps
    w[co, taps, ci]: the same signature as the importer's contraction."""
    blocks = (npix + BLOCK - 1) // BLOCK

    @T.prim_func(private=True)
    def conv(x: T.Buffer((n, ci, length), "float32"), w: T.Buffer((co, taps, ci), "float32"),
             out: T.Buffer((n, co, npix), "float32")):
        # opaque (8): FuseOps must not merge producers or the bias add into the extern call
        T.func_attr({"sam3.f32_conv": True, "tirx.is_scheduled": True, "op_pattern": 8})
        for i in T.parallel(n * blocks):
            panel = T.decl_buffer((taps * ci * BLOCK,), "float32")
            T.evaluate(T.call_extern(
                "int32", "sam3_same_conv_block",
                out.access_ptr("w", offset=(i // blocks) * co * npix),
                x.access_ptr("r", offset=(i // blocks) * ci * length),
                w.access_ptr("r", offset=0), panel.access_ptr("w", offset=0),
                T.int64(co), T.int64(ci), T.int64(taps), T.int64(kw), T.int64(row),
                T.int64(length), T.int64(npix), T.Cast("int64", (i % blocks) * BLOCK)))

    return conv


def same_convs(mod: tvm.IRModule, avx2: bool = False) -> tvm.IRModule:
    """Swap the body of every importer same-convolution PrimFunc for the C kernel (AVX-512
    tiles, or AVX2 ones) (the call sites stay); attach the C module once if any was
    swapped."""
    funcs = dict(mod.functions)
    swapped = False
    for gv, func in mod.functions.items():
        if not isinstance(func, tvm.tirx.PrimFunc) or func.attrs is None or ATTR not in func.attrs:
            continue
        funcs[gv] = conv_func(*(int(v) for v in func.attrs[ATTR]))
        swapped = True
    if not swapped:
        return mod
    return _with_kernel(tvm.IRModule(funcs, attrs=mod.attrs), avx2)


# 1x1 convolutions with fewer output channels stay matmuls: the kernel copies every
# 64-pixel window of all ci channels once per block, and below ~128 output channels that
# copy is no longer small beside the products (Zen 2: 256->64 at 144x144 ran at 61
# GFLOP/s on the kernel, 256->256 at 288x288 at 185)
POINTWISE_MIN_CO = 128


def _pointwise_matmuls(func) -> dict:
    """{matmul var: (n, ci, pixels, co)} for the importer's 1x1 convolutions
    (converters._pointwise_matmul: W[co, ci] @ x[n, ci, pixels], W from the weights)."""
    from sam3_tvm.frontend.rewrites import static_shape
    from sam3_tvm.lowering.bf16 import _param_only

    weights = _param_only(func)
    found = {}
    for blk in func.body.blocks:
        for b in blk.bindings:
            v = b.value
            if not (isinstance(v, relax.Call) and getattr(v.op, "name", "") == "relax.matmul"):
                continue
            w, x = v.args
            ws, xs = static_shape(w), static_shape(x)
            if (w in weights and x not in weights and ws is not None and xs is not None
                    and len(ws) == 2 and len(xs) == 3 and ws[1] == xs[1]
                    and ws[0] >= POINTWISE_MIN_CO and xs[2] >= BLOCK
                    and str(w.ty.dtype) == "float32" and str(x.ty.dtype) == "float32"):
                found[b.var] = (xs[0], ws[1], xs[2], ws[0])
    return found


@relax.expr_functor.mutator
class _Pointwise(relax.PyExprMutator):
    def __init__(self, mod, found):
        super().__init__(mod)
        self.found = found
        self.funcs: dict = {}

    def visit_var_binding_(self, binding):
        if binding.var not in self.found:
            return super().visit_var_binding_(binding)
        n, ci, pix, co = self.found[binding.var]
        w, x = (self.visit_expr(a) for a in binding.value.args)
        key = (n, ci, pix, co)
        if key not in self.funcs:
            name = "pointwise_conv_" + "_".join(map(str, key))
            # one tap (kw = 1), no padding: the input's length and row are the pixels
            func = conv_func(n, ci, pix, co, 1, pix, 1, pix).with_attr("global_symbol", name)
            self.funcs[key] = self.builder_.add_func(func, name)
        bb = self.builder_
        taps = bb.emit(relax.op.reshape(w, (co, 1, ci)))
        call = relax.call_tir(self.funcs[key], [x, taps], relax.TensorType((n, co, pix), "float32"))
        y = bb.emit(call) if isinstance(binding.var, relax.DataflowVar) else bb.emit_output(call)
        self.set_var_remap(binding.var, y)


def pointwise_convs(mod: tvm.IRModule, avx2: bool = False) -> tvm.IRModule:
    """The 1x1 convolutions of `main` (neck, pixel decoder) on the same kernel as one tap.
    The importer's matmul has the weights on the left, W[co, ci] @ x[ci, pixels]: our
    GEMM rule ran the neck's 256->256 at 288x288 at 68 GFLOP/s on Zen 2 (MetaSchedule's
    best of 16 trials: 22), the kernel at 185, as the 3x3s."""
    found = _pointwise_matmuls(mod["main"])
    if not found:
        return mod
    rw = _Pointwise(mod, found)
    new = rw.visit_expr(mod["main"])
    out = rw.builder_.get()
    out[mod.get_global_var("main")] = new
    return _with_kernel(relax.transform.DeadCodeElimination()(out), avx2)


def _with_kernel(mod: tvm.IRModule, avx2: bool) -> tvm.IRModule:
    """`mod` with the C kernel among its external modules, once (same_convs and
    pointwise_convs both call it; two copies would clash at link time)."""
    if mod.attrs is not None and KERNEL_ATTACHED in mod.attrs:
        return mod
    mods = list(mod.attrs["external_mods"]) if mod.attrs is not None and "external_mods" in mod.attrs else []
    return mod.with_attr("external_mods", mods + [c_module(avx2)]).with_attr(KERNEL_ATTACHED, True)


def standalone_library(n: int, ci: int, co: int, h: int, w: int, k: int, path: str,
                       cpu: str | None = None):
    """`conv` (the kernel for a k x k same convolution of x[n, ci, h, w], taking the
    padded flattened input and the taps as the importer lays them out) as a library at
    `path` for this host (or `mcpu` `cpu`), loaded: the kernel outside a bundle, for the
    tests and the benchmark."""
    from sam3_tvm.lowering.targets import host_target

    target = host_target(cpu=cpu)
    p = k // 2
    row = w + 2 * p
    func = conv_func(n, ci, (h + 2 * p + 1) * row, co, k * k, h * row, k, row)
    ex = tvm.compile(tvm.IRModule({"conv": func.with_attr("global_symbol", "conv")}), target=target)
    ex.mod.import_module(c_module(linear_f32.kind_for(target) is linear_f32.KIND_AVX2))
    ex.export_library(path, options=["-O3"])
    return tvm.runtime.load_module(path)
