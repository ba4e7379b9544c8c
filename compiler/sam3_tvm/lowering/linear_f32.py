"""fp32 linear layers on weights packed in panels, for AVX-512 CPUs where the default
GEMM schedule is far from peak (`f32_linears`, used by `compile` where `supported`).

The default schedule (schedule.py) reads W [K, N] in place: each step of k loads 64
columns of one row, and the next row is N * 4 bytes further. When that stride is a
multiple of 4 KiB (N = 1024 and 3072 in the ViT), every row of a register tile's k
walk falls in the same L1 set, and on the Intel Xeon these numbers were measured on
(Sapphire Rapids-class, L1 48 KiB 12-way) the ViT's linears ran at 57-90 GFLOP/s
against MKL's 190-230 (docs/performance.md). On Zen 4 the same schedule runs at 95%
of peak, so AMD targets keep it until this kernel is measured there.

Here W is packed at compile time (`lift.py` runs `pack`) to [N/64, K, 64]: one 64-column
panel is K * 256 contiguous bytes, read front to back. The 6x64 register tile (24 zmm
accumulators, 4 for W, 1 broadcast of x) is C with AVX-512 intrinsics, compiled into the
component's library as bf16.py's kernels are. Each row tile walks the whole panel: K
blocks that keep a block in L1 (KC 128-512) were slower there (62-172 GFLOP/s against
160-203 unblocked; the accumulators go back to memory between blocks), so KC only
bounds a block at 2 MiB. Sums run in k
order in fp32, from the bias (the default schedule adds the bias last: rounding-level
differences). A GELU after the linear runs in the epilogue (bf16.py's rational erf).
"""

from __future__ import annotations

import tvm
from tvm import te
from tvm.script import tirx as T

from sam3_tvm.lowering import bf16

PANEL = bf16.PANEL  # output columns per panel (4 zmm)
ROWS = 6            # rows per register tile
KC = 8192           # k per block (the model's K is at most 4736: one block)

C_SOURCE = r"""
#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SAM3_KERNEL __attribute__((target("avx512f,avx512dq,fma"), always_inline)) static inline
@GELU@

@F32_TILE@
@END_TILES@
/* One 64-column panel, all rows: c = act(bias + a @ b), b packed [k][64]. */
__attribute__((target("avx512f,avx512dq,fma")))
int32_t sam3_f32_panel(float* c, int64_t ldc, const float* a, int64_t lda, const float* b,
                       int64_t k, int64_t rows, const float* bias, int64_t act) {
  for (int64_t k0 = 0; k0 < k; k0 += @KC@) {
    int64_t kc = k - k0 < @KC@ ? k - k0 : @KC@;
    int64_t first = k0 == 0, act_here = k0 + kc == k ? act : 0;
    const float* bk = b + 64 * k0;
    int64_t r = 0;
    for (; r + 6 <= rows; r += 6)
      sam3_f32_tile_6(c + r * ldc, ldc, a + r * lda + k0, lda, bk, kc, bias, first, act_here);
    const float* ar = a + r * lda + k0;
    float* cr = c + r * ldc;
    switch (rows - r) {
      case 1: sam3_f32_tile_1(cr, ldc, ar, lda, bk, kc, bias, first, act_here); break;
      case 2: sam3_f32_tile_2(cr, ldc, ar, lda, bk, kc, bias, first, act_here); break;
      case 3: sam3_f32_tile_3(cr, ldc, ar, lda, bk, kc, bias, first, act_here); break;
      case 4: sam3_f32_tile_4(cr, ldc, ar, lda, bk, kc, bias, first, act_here); break;
      case 5: sam3_f32_tile_5(cr, ldc, ar, lda, bk, kc, bias, first, act_here); break;
      default: break;
    }
  }
  return 0;
}

#ifdef __cplusplus
}
#endif
"""


def _filled() -> str:
    return C_SOURCE.replace("@GELU@", bf16.GELU_C).replace("@F32_TILE@", bf16.F32_TILE_C)


def c_source(kc: int = KC) -> str:
    return _filled().replace("@KC@", str(kc)).replace("@END_TILES@", "")


def tile_source() -> str:
    """The headers and the register tiles (`sam3_f32_tile_1` .. `_6`, static), for other
    kernels' C (conv_f32.py); the caller closes the `extern "C"` block."""
    return _filled().split("@END_TILES@")[0]


def c_module(kc: int = KC):
    """The micro-kernel as a C source module (compiled by `export_library`)."""
    create = tvm.get_global_func("runtime.CSourceModuleCreate")
    return create(c_source(kc), "c", ["sam3_f32_panel"], [])


def supported(target) -> bool:
    """x86-64 with AVX-512, not AMD: the CPUs this kernel was measured faster on (the
    Intel Xeon above). Zen 4 keeps the default schedule (95% of peak there)."""
    from sam3_tvm.lowering.schedule import _lanes

    mcpu = str(target.attrs.get("mcpu", "")) if target.attrs else ""
    return ("x86_64" in str(target.attrs.get("mtriple", "")) and _lanes(target) >= 16
            and not mcpu.startswith("znver"))


def supported_avx2(target) -> bool:
    """x86-64 with AVX2 and no AVX-512 (x86-64-v3 builds, haswell .. alderlake, znver1-3):
    the default schedule's AVX2 tiles ran the ViT's linears at 27-36 GFLOP/s on the Xeon
    (4 KiB W strides, as above), the AVX2 kernel below at 51 (docs/performance.md)."""
    from sam3_tvm.lowering.schedule import _lanes

    return "x86_64" in str(target.attrs.get("mtriple", "")) and _lanes(target) == 8


def kind_for(target):
    """The packed fp32 kernel `compile` uses on `target` (KIND, KIND_AVX2), or None."""
    return KIND if supported(target) else KIND_AVX2 if supported_avx2(target) else None


def pack_func(k: int, n: int):
    """W [K, N] -> [N/64, K, 64] (run at compile time by lift)."""
    w = te.placeholder((k, n), "float32", name="w")
    out = te.compute((n // PANEL, k, PANEL), lambda p, kk, c: w[kk, p * PANEL + c], name="pack")
    # opaque: FuseTIR mis-merges a producer's buffer into this TE function (TVM 0.27)
    return te.create_prim_func([w, out]).with_attr("op_pattern", 8)


def gemm_func(m: int, k: int, n: int, gelu: bool = False):
    """out[M, N] = x[M, K] @ W + bias (then GELU if `gelu`), W packed by `pack_func`."""
    act = 1 if gelu else 0

    @T.prim_func(private=True)
    def gemm(x: T.Buffer((m, k), "float32"), w: T.Buffer((n // PANEL, k, PANEL), "float32"),
             bias: T.Buffer((n,), "float32"), out: T.Buffer((m, n), "float32")):
        # opaque (8): FuseOps must not merge producers into the extern calls
        T.func_attr({"sam3.f32_gemm": True, "tirx.is_scheduled": True, "op_pattern": 8})
        for p in T.parallel(n // PANEL):
            T.evaluate(T.call_extern(
                "int32", "sam3_f32_panel",
                out.access_ptr("w", offset=p * PANEL), T.int64(n),
                x.access_ptr("r", offset=0), T.int64(k),
                w.access_ptr("r", offset=p * k * PANEL), T.int64(k),
                T.int64(m), bias.access_ptr("r", offset=p * PANEL), T.int64(act)))

    return gemm


KIND = bf16.PackedKind(prefix="sam3_f32_", pack=pack_func, gemm=gemm_func,
                       packed_type=lambda k, n: ((n // PANEL, k, PANEL), "float32"),
                       c_module=c_module, min_k_multiple=1)


# --- AVX2 (8 fp32 lanes, 16 ymm registers) -------------------------------------------
# A 6x64 tile needs 24 accumulators; AVX2 has 16 registers. The tile here is 6 rows x 16
# columns (12 accumulators, 2 for W, 1 broadcast of x), on W packed as [N/16, K, 16]:
# each 16-column sub-panel is K * 64 contiguous bytes. One call still covers 64 columns
# (4 sub-panels) so each 6-row block of x is read by four tiles while it is in L1.
AVX2_SOURCE = r"""
#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SAM3_KERNEL __attribute__((target("avx2,fma"), always_inline)) static inline
@GELU@

/* c[r, 0:16] = act(init[0:16] + sum_k a[r, k] * b[k, 0:16]) for r < R; b is one 16-column
   sub-panel ([k][16]) */
#define SAM3_F32X8_TILE(R)                                                                  \
  SAM3_KERNEL void sam3_f32x8_tile_##R(float* c, int64_t ldc, const float* a, int64_t lda,  \
                                       const float* b, int64_t k, const float* init,        \
                                       int64_t act) {                                       \
    __m256 acc[R][2];                                                                       \
    for (int j = 0; j < 2; ++j)                                                             \
      for (int r = 0; r < R; ++r)                                                           \
        acc[r][j] = init ? _mm256_loadu_ps(init + 8 * j) : _mm256_setzero_ps();             \
    for (int64_t kk = 0; kk < k; ++kk) {                                                    \
      __m256 b0 = _mm256_loadu_ps(b + 16 * kk), b1 = _mm256_loadu_ps(b + 16 * kk + 8);      \
      for (int r = 0; r < R; ++r) {                                                         \
        __m256 av = _mm256_broadcast_ss(a + r * lda + kk);                                  \
        acc[r][0] = _mm256_fmadd_ps(av, b0, acc[r][0]);                                     \
        acc[r][1] = _mm256_fmadd_ps(av, b1, acc[r][1]);                                     \
      }                                                                                     \
    }                                                                                       \
    SAM3_TILE_STORE(R, 2, 8)                                                                \
  }

SAM3_F32X8_TILE(1)
SAM3_F32X8_TILE(2)
SAM3_F32X8_TILE(3)
SAM3_F32X8_TILE(4)
SAM3_F32X8_TILE(5)
SAM3_F32X8_TILE(6)
@END_TILES@
/* 64 columns, all rows: c = act(bias + a @ b), b = 4 sub-panels [4][k][16]. */
__attribute__((target("avx2,fma")))
int32_t sam3_f32x8_panel(float* c, int64_t ldc, const float* a, int64_t lda, const float* b,
                         int64_t k, int64_t rows, const float* bias, int64_t act) {
  int64_t r = 0;
  for (; r + 6 <= rows; r += 6)
    for (int s = 0; s < 4; ++s)
      sam3_f32x8_tile_6(c + r * ldc + 16 * s, ldc, a + r * lda, lda, b + s * k * 16, k,
                        bias + 16 * s, act);
  for (int s = 0; s < 4 && r < rows; ++s) {
    const float* ar = a + r * lda;
    const float* bs = b + s * k * 16;
    float* cr = c + r * ldc + 16 * s;
    switch (rows - r) {
      case 1: sam3_f32x8_tile_1(cr, ldc, ar, lda, bs, k, bias + 16 * s, act); break;
      case 2: sam3_f32x8_tile_2(cr, ldc, ar, lda, bs, k, bias + 16 * s, act); break;
      case 3: sam3_f32x8_tile_3(cr, ldc, ar, lda, bs, k, bias + 16 * s, act); break;
      case 4: sam3_f32x8_tile_4(cr, ldc, ar, lda, bs, k, bias + 16 * s, act); break;
      case 5: sam3_f32x8_tile_5(cr, ldc, ar, lda, bs, k, bias + 16 * s, act); break;
      default: break;
    }
  }
  return 0;
}

#ifdef __cplusplus
}
#endif
"""
SUB = 16  # columns per AVX2 sub-panel


def _avx2_source() -> str:
    gelu = bf16.GELU_C.replace("__m512", "__m256").replace("_mm512_", "_mm256_")
    return AVX2_SOURCE.replace("@GELU@", gelu)


def avx2_tile_source() -> str:
    """As `tile_source`, for the AVX2 tiles (`sam3_f32x8_tile_1` .. `_6`)."""
    return _avx2_source().split("@END_TILES@")[0]


def avx2_c_module(kc: int = KC):
    """The AVX2 micro-kernel as a C source module (`kc` unused: it walks all of K)."""
    create = tvm.get_global_func("runtime.CSourceModuleCreate")
    return create(_avx2_source().replace("@END_TILES@", ""), "c", ["sam3_f32x8_panel"], [])


def avx2_pack_func(k: int, n: int):
    """W [K, N] -> [N/16, K, 16] (run at compile time by lift)."""
    w = te.placeholder((k, n), "float32", name="w")
    out = te.compute((n // SUB, k, SUB), lambda p, kk, c: w[kk, p * SUB + c], name="pack")
    return te.create_prim_func([w, out]).with_attr("op_pattern", 8)  # opaque: see pack_func


def avx2_gemm_func(m: int, k: int, n: int, gelu: bool = False):
    """out[M, N] = x[M, K] @ W + bias (then GELU if `gelu`), W packed by `avx2_pack_func`."""
    act = 1 if gelu else 0

    @T.prim_func(private=True)
    def gemm(x: T.Buffer((m, k), "float32"), w: T.Buffer((n // SUB, k, SUB), "float32"),
             bias: T.Buffer((n,), "float32"), out: T.Buffer((m, n), "float32")):
        T.func_attr({"sam3.f32_gemm": True, "tirx.is_scheduled": True, "op_pattern": 8})
        for p in T.parallel(n // PANEL):
            T.evaluate(T.call_extern(
                "int32", "sam3_f32x8_panel",
                out.access_ptr("w", offset=p * PANEL), T.int64(n),
                x.access_ptr("r", offset=0), T.int64(k),
                w.access_ptr("r", offset=p * k * PANEL), T.int64(k),
                T.int64(m), bias.access_ptr("r", offset=p * PANEL), T.int64(act)))

    return gemm


KIND_AVX2 = bf16.PackedKind(prefix="sam3_f32x8_", pack=avx2_pack_func, gemm=avx2_gemm_func,
                            packed_type=lambda k, n: ((n // SUB, k, SUB), "float32"),
                            c_module=avx2_c_module, min_k_multiple=1)


def f32_linears(mod: tvm.IRModule, kind=KIND) -> tvm.IRModule:
    """Rewrite `main`'s weight matmuls (+ bias, + GELU) to the packed kernel `kind`."""
    return bf16.packed_linears(mod, kind)


def standalone_library(m: int, k: int, n: int, path: str, gelu: bool = False, kc: int = KC,
                       cpu: str | None = None):
    """`gemm` and `pack` as one library at `path` (for this host, or `mcpu` `cpu`: the
    kernel `kind_for` picks there), loaded (benchmark rows, tests)."""
    from sam3_tvm.lowering.targets import host_target

    target = host_target(cpu=cpu)
    kind = kind_for(target) or KIND
    mod = tvm.IRModule({"gemm": kind.gemm(m, k, n, gelu).with_attr("global_symbol", "gemm"),
                        "pack": kind.pack(k, n).with_attr("global_symbol", "pack")})
    ex = tvm.compile(mod, target=target)
    ex.mod.import_module(kind.c_module(kc))
    ex.export_library(path, options=["-O3"])
    return tvm.runtime.load_module(path)
