"""bf16 linear layers for CPUs with AVX512_BF16 (`--precision bf16`).

Every `x @ W` whose W comes from the weights becomes one kernel that rounds x
to bf16 and multiplies it with a pre-packed bf16 W on `vdpbf16ps`, which does
two multiply-adds per fp32 lane per instruction (twice the fp32 FMA rate) and
accumulates in fp32. On CPUs with AMX-BF16 (Intel Sapphire Rapids and later) the
same packed W feeds the AMX tile unit instead, chosen at run time (`sam3_bf16_panel`):
there vdpbf16ps is slow (about 100 GFLOP/s on 2 cores against 1000 on the tiles,
docs/performance.md) while on Zen 4 it is the fast path. Intel CPUs without AMX retire
vdpbf16ps at half their fp32 FMA rate, so there x stays fp32 and W's bf16 values are
widened to fp32 for linear_f32's register tile (`sam3_bf16_panel_fma`). Attention has its own bf16 kernel (attention.to_bf16, same
components); everything else (norms, softmax, convolutions, residuals) stays fp32.

Why a C micro-kernel: TVM 0.27 cannot hand a `<32 x bfloat>` vector to an LLVM
intrinsic (its bf16 legalisation rewrites bf16 values to fp32 or uint16 first, and
the LLVM codegen crashes when the legalisation is skipped). So the 6x64 register
tile is C with the AVX-512 BF16 intrinsics, compiled into each component's
library (a C source module linked by `export_library`), and called from a TIR
kernel that TVM parallelises. bf16 values are stored as uint16 bit patterns.

Weight layout, shape `[N/64, K/2, 64, 2]`: 64-column panels of pairs of rows (k, k+1),
ordered inside a panel so that each AMX B tile is 1 KB of contiguous memory and each
`vdpbf16ps` operand (one pair of rows, 16 columns) one 64-byte load (`pack_func`). The
packing is weight-only work, so `lift.py` does it at compile time and the bundle stores
packed bf16.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np
import tvm
from tvm import relax, te, tirx
from tvm.script import tirx as T

from sam3_tvm.frontend.rewrites import static_shape

PANEL = 64  # output columns per micro-kernel call (4 zmm registers)
ROWS = 6    # rows per micro-kernel call (6x4 fp32 accumulators + 4 B + 1 A = 29 zmm)

GELU_C = r"""
/* GELU(x) = x/2 (1 + erf(x/sqrt2)) for the epilogue of a linear followed by nn.GELU.
   erf(u) ~ u P(u^2) / Q(u^2) for |u| <= 4 (coefficients fitted here by iterated least
   squares: scripts/fit_erf.py; |error| < 4e-7 in fp32), +-1 beyond
   (1 - erf(4) = 1.5e-8). GELU's absolute error < 1.1e-6 for |x| <= 12. */
SAM3_KERNEL __m512 sam3_gelu(__m512 x) {
  __m512 u = _mm512_mul_ps(x, _mm512_set1_ps(0.70710678118654752f));
  u = _mm512_max_ps(_mm512_min_ps(u, _mm512_set1_ps(4.0f)), _mm512_set1_ps(-4.0f));
  __m512 z = _mm512_mul_ps(u, u);
  __m512 p = _mm512_fmadd_ps(_mm512_set1_ps(1.9749113562e-06f), z, _mm512_set1_ps(2.8803458554e-04f));
  p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(4.0033012629e-03f));
  p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(5.3466457874e-02f));
  p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(1.9624079764e-01f));
  p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(1.1283789873e+00f));
  __m512 q = _mm512_fmadd_ps(_mm512_set1_ps(3.7481331674e-05f), z, _mm512_set1_ps(1.2162771309e-03f));
  q = _mm512_fmadd_ps(q, z, _mm512_set1_ps(1.5443746000e-02f));
  q = _mm512_fmadd_ps(q, z, _mm512_set1_ps(1.1647310108e-01f));
  q = _mm512_fmadd_ps(q, z, _mm512_set1_ps(5.0724506378e-01f));
  q = _mm512_fmadd_ps(q, z, _mm512_set1_ps(1.0f));
  __m512 e = _mm512_div_ps(_mm512_mul_ps(u, p), q);
  e = _mm512_max_ps(_mm512_min_ps(e, _mm512_set1_ps(1.0f)), _mm512_set1_ps(-1.0f));
  __m512 h = _mm512_mul_ps(x, _mm512_set1_ps(0.5f));
  return _mm512_fmadd_ps(h, e, h);
}

/* The register tiles' last step: GELU if act, then acc's R rows of NV vectors (W lanes
   each) to c, rows ldc apart */
#define SAM3_TILE_STORE(R, NV, W)                                                    \
  if (act == 1)                                                                      \
    for (int r = 0; r < R; ++r)                                                      \
      for (int j = 0; j < NV; ++j) acc[r][j] = sam3_gelu(acc[r][j]);                 \
  for (int r = 0; r < R; ++r)                                                        \
    for (int j = 0; j < NV; ++j) _mm512_storeu_ps(c + r * ldc + W * j, acc[r][j]);
"""

# The fp32 6x64 register tile (linear_f32's kernel; bf16's path for Intel without AMX
# runs it on widened operands). Needs SAM3_KERNEL and sam3_gelu defined before it.
F32_TILE_C = r"""/* c[r, 0:64] = (first ? init : c[r, 0:64]) + sum_k a[r, k] * b[k, 0:64] for r < R, then
   GELU if act; b is a block of a packed panel ([kc][64]) */
#define SAM3_F32_TILE(R)                                                                  \
  SAM3_KERNEL void sam3_f32_tile_##R(float* c, int64_t ldc, const float* a, int64_t lda,  \
                                     const float* b, int64_t kc, const float* init,       \
                                     int64_t first, int64_t act) {                        \
    __m512 acc[R][4];                                                                     \
    for (int j = 0; j < 4; ++j)                                                           \
      for (int r = 0; r < R; ++r)                                                         \
        acc[r][j] = !first ? _mm512_loadu_ps(c + r * ldc + 16 * j)                        \
                           : init ? _mm512_loadu_ps(init + 16 * j) : _mm512_setzero_ps(); \
    for (int64_t k = 0; k < kc; ++k) {                                                    \
      const float* bk = b + 64 * k;                                                       \
      __m512 b0 = _mm512_loadu_ps(bk), b1 = _mm512_loadu_ps(bk + 16);                     \
      __m512 b2 = _mm512_loadu_ps(bk + 32), b3 = _mm512_loadu_ps(bk + 48);                \
      for (int r = 0; r < R; ++r) {                                                       \
        __m512 av = _mm512_set1_ps(a[r * lda + k]);                                       \
        acc[r][0] = _mm512_fmadd_ps(av, b0, acc[r][0]);                                   \
        acc[r][1] = _mm512_fmadd_ps(av, b1, acc[r][1]);                                   \
        acc[r][2] = _mm512_fmadd_ps(av, b2, acc[r][2]);                                   \
        acc[r][3] = _mm512_fmadd_ps(av, b3, acc[r][3]);                                   \
      }                                                                                   \
    }                                                                                     \
    SAM3_TILE_STORE(R, 4, 16)                                                             \
  }

SAM3_F32_TILE(1)
SAM3_F32_TILE(2)
SAM3_F32_TILE(3)
SAM3_F32_TILE(4)
SAM3_F32_TILE(5)
SAM3_F32_TILE(6)
"""


# The AMX probe and tile configuration, pasted into this module's and attention.py's C
# (each keeps its own copy of the probe's state; after immintrin.h and string.h).
AMX_COMMON = r"""
/* AMX (Intel Sapphire Rapids and later): the tile unit does a 16x32 by 32x16 bf16 product
   per instruction, 8x the work of a vdpbf16ps. Used when the CPU reports AMX-TILE and
   AMX-BF16 and Linux grants this process the tile state (arch_prctl ARCH_REQ_XCOMP_PERM,
   needed once per process since Linux 5.16); SAM3_NO_AMX=1 turns it off. Otherwise the
   vdpbf16ps code does the same products (same rounding to bf16, fp32 sums; only the
   order of the sums differs). */
#if defined(__x86_64__) && defined(__linux__)
#include <cpuid.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>
#define SAM3_HAVE_AMX 1
#endif

static int sam3_amx_probe(void) {
#ifdef SAM3_HAVE_AMX
  unsigned int a, b, c, d;
  const char* off = getenv("SAM3_NO_AMX");
  if (off && *off && *off != '0') return 0;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
  if (!(d & (1u << 24)) || !(d & (1u << 22))) return 0; /* AMX-TILE, AMX-BF16 */
  /* ARCH_REQ_XCOMP_PERM (0x1023) for XFEATURE_XTILEDATA (18) */
  return syscall(SYS_arch_prctl, 0x1023, 18) == 0;
#else
  return 0;
#endif
}

/* -1 unknown, 0 no, 1 yes; probing twice from two threads is harmless */
static int sam3_amx_state = -1;

static int sam3_amx_ready(void) {
  int s = __atomic_load_n(&sam3_amx_state, __ATOMIC_ACQUIRE);
  if (s < 0) {
    s = sam3_amx_probe();
    __atomic_store_n(&sam3_amx_state, s, __ATOMIC_RELEASE);
  }
  return s;
}

#ifdef SAM3_HAVE_AMX
#define SAM3_AMX __attribute__((target("amx-tile,amx-bf16,avx512f,avx512bw,avx512bf16")))

/* All 8 tiles 16 rows of 64 bytes: 16x16 fp32 (C), 16 rows x 32 bf16 (A), or 16 pairs of
   rows x 16 columns of bf16 pairs (B). Tile state is per thread: load it in every call. */
typedef struct { unsigned char b[64]; } sam3_tilecfg;

SAM3_AMX static void sam3_amx_config(void) {
  sam3_tilecfg cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.b[0] = 1; /* palette 1 */
  for (int t = 0; t < 8; ++t) {
    cfg.b[16 + 2 * t] = 64; /* bytes per row (little-endian uint16) */
    cfg.b[48 + t] = 16;     /* rows */
  }
  /* not GCC 12's _tile_loadconfig: its asm names only the first 8 bytes as read, so the
     stores to the rest may be dropped (#GP, a SIGSEGV, seen at -O1) */
  __asm__ volatile("ldtilecfg %0" : : "m"(cfg));
}

SAM3_AMX static void sam3_amx_release(void) { _tile_release(); }

#endif
"""

# Whether bf16 products run on fp32 FMAs instead of vdpbf16ps, pasted into this module's
# and attention.py's C (after AMX_COMMON).
FMA_CHOICE_C = r"""
/* Intel CPUs without AMX (Cooper Lake; Sapphire and Emerald Rapids where the hypervisor
   or kernel does not grant the tile state) retire vdpbf16ps at half their fp32 FMA rate
   (a 2-vCPU Emerald Rapids VM, register-only loops: 83 against 167 GFLOP/s per core),
   so there bf16 products run on fp32 FMAs (the bf16 values widened exactly, bits << 16,
   or fp32 values in attention). 1: Intel, 0: every other CPU (Zen 4 and 5 run vdpbf16ps
   at twice their fp32 rate); the caller asks only where AMX does not take the work.
   SAM3_BF16_FMA=1 or 0 overrides. */
#include <cpuid.h>
#include <stdlib.h>
static int sam3_fma_state = -1;

static int sam3_bf16_on_fma(void) {
  int s = __atomic_load_n(&sam3_fma_state, __ATOMIC_ACQUIRE);
  if (s < 0) {
    const char* env = getenv("SAM3_BF16_FMA");
    if (env && *env) {
      s = *env != '0';
    } else {
      unsigned int a = 0, b = 0, c = 0, d = 0;
      __get_cpuid(0, &a, &b, &c, &d);
      s = b == 0x756e6547u && d == 0x49656e69u && c == 0x6c65746eu; /* "GenuineIntel" */
    }
    __atomic_store_n(&sam3_fma_state, s, __ATOMIC_RELEASE);
  }
  return s;
}
"""

# Rounding fp32 to bf16 pairs, pasted into attention.py's and conv_bf16.py's C (after
# immintrin.h and string.h): both pack two rows of k into vdpbf16ps / AMX pair layouts.
PAIRS_C = r"""
/* 16 floats of a and of b (zeros if b is 0) -> 16 bf16 pairs (a[i], b[i]), round to
   nearest even */
__attribute__((target("avx512f,avx512bw,avx512bf16"), always_inline)) static inline
void sam3_pairs_bf16(uint16_t* out, const float* a, const float* b) {
  __m256i x = (__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(a));
  __m256i y = b ? (__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(b)) : _mm256_setzero_si256();
  __m256i lo = _mm256_unpacklo_epi16(x, y), hi = _mm256_unpackhi_epi16(x, y);
  _mm256_storeu_si256((__m256i*)out, _mm256_permute2x128_si256(lo, hi, 0x20));
  _mm256_storeu_si256((__m256i*)(out + 16), _mm256_permute2x128_si256(lo, hi, 0x31));
}

/* one float -> bf16, round to nearest even */
static inline uint16_t sam3_one_bf16(float x) {
  uint32_t u;
  memcpy(&u, &x, 4);
  return (uint16_t)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}
"""

C_SOURCE = r"""
#include <immintrin.h>
#include <stdint.h>
#include <string.h>

/* export_library compiles this as C++: keep the symbols unmangled for the TIR calls */
#ifdef __cplusplus
extern "C" {
#endif

#define SAM3_BF16 __attribute__((target("avx512f,avx512bw,avx512bf16"), always_inline)) static inline

#define SAM3_KERNEL SAM3_BF16
@GELU@
@F32_TILE@

/* c[r, 0:64] = act(bias + sum_k a[r, k] * b[k, 0:64]), r < R; b one packed panel (see
   pack_func: blocks of 16 pairs of k, each 4 groups of 16 columns); act: 0 none, 1 GELU. */
#define SAM3_TILE(R)                                                                   \
  SAM3_BF16 void sam3_tile_##R(float* c, int64_t ldc, const uint16_t* a, int64_t lda,  \
                               const uint16_t* b, int64_t k2, const float* bias,       \
                               int64_t act) {                                          \
    __m512 acc[R][4];                                                                  \
    for (int j = 0; j < 4; ++j) {                                                      \
      __m512 init = bias ? _mm512_loadu_ps(bias + 16 * j) : _mm512_setzero_ps();       \
      for (int r = 0; r < R; ++r) acc[r][j] = init;                                    \
    }                                                                                  \
    for (int64_t k0 = 0; k0 < k2; k0 += 16) {                                          \
      int64_t bs = k2 - k0 < 16 ? k2 - k0 : 16; /* pairs in this block */              \
      const uint16_t* bb = b + 128 * k0;                                               \
      for (int64_t kk = 0; kk < bs; ++kk) {                                            \
        const uint16_t* bk = bb + 32 * kk;                                             \
        __m512bh b0 = (__m512bh)_mm512_loadu_si512(bk);                                \
        __m512bh b1 = (__m512bh)_mm512_loadu_si512(bk + 32 * bs);                      \
        __m512bh b2 = (__m512bh)_mm512_loadu_si512(bk + 64 * bs);                      \
        __m512bh b3 = (__m512bh)_mm512_loadu_si512(bk + 96 * bs);                      \
        for (int r = 0; r < R; ++r) {                                                  \
          int32_t pair;                                                                \
          memcpy(&pair, a + r * lda + 2 * (k0 + kk), 4);                               \
          __m512bh av = (__m512bh)_mm512_set1_epi32(pair);                             \
          acc[r][0] = _mm512_dpbf16_ps(acc[r][0], av, b0);                             \
          acc[r][1] = _mm512_dpbf16_ps(acc[r][1], av, b1);                             \
          acc[r][2] = _mm512_dpbf16_ps(acc[r][2], av, b2);                             \
          acc[r][3] = _mm512_dpbf16_ps(acc[r][3], av, b3);                             \
        }                                                                              \
      }                                                                                \
    }                                                                                  \
    SAM3_TILE_STORE(R, 4, 16)                                                          \
  }

SAM3_TILE(1)
SAM3_TILE(2)
SAM3_TILE(3)
SAM3_TILE(4)
SAM3_TILE(5)
SAM3_TILE(6)

/* Intel CPUs without AMX (FMA_CHOICE_C): the linear on fp32 FMAs, x as it comes (fp32)
   times W's bf16 values widened exactly (bits << 16) into `wf` [K][64], one panel per
   call, under linear_f32's register tile: the fp32 kernel's speed on half its weight
   memory, and closer to the exact product than bf16 x. On the Emerald Rapids VM, ViT
   linears: widening inside the tile per pair of k (a shift and a mask per loaded
   vector) ran 0.70-0.93x the fp32 kernel, widening x per 6-row block too 0.82-0.91x. */
@FMA_CHOICE@
__attribute__((target("avx512f,avx512bw,avx512bf16")))
int32_t sam3_bf16_panel_fma(float* c, int64_t ldc, const float* x, float* wf, const uint16_t* b,
                            int64_t k2, int64_t rows, const float* bias, int64_t act) {
  int64_t k = 2 * k2;
  const __m512i high = _mm512_set1_epi32((int)0xFFFF0000u);
  for (int64_t k0 = 0; k0 < k2; k0 += 16) {
    int64_t bs = k2 - k0 < 16 ? k2 - k0 : 16; /* pairs in this block */
    for (int j = 0; j < 4; ++j)
      for (int64_t kk = 0; kk < bs; ++kk) {
        __m512i v = _mm512_loadu_si512(b + 128 * k0 + 32 * bs * j + 32 * kk);
        float* w = wf + 64 * (2 * (k0 + kk)) + 16 * j;
        _mm512_storeu_si512(w, _mm512_slli_epi32(v, 16));       /* k even: the low halves */
        _mm512_storeu_si512(w + 64, _mm512_and_si512(v, high)); /* k odd: the high */
      }
  }
  int64_t r = 0;
  for (; r + 6 <= rows; r += 6) sam3_f32_tile_6(c + r * ldc, ldc, x + r * k, k, wf, k, bias, 1, act);
  float* cr = c + r * ldc;
  const float* xr = x + r * k;
  switch (rows - r) {
    case 1: sam3_f32_tile_1(cr, ldc, xr, k, wf, k, bias, 1, act); break;
    case 2: sam3_f32_tile_2(cr, ldc, xr, k, wf, k, bias, 1, act); break;
    case 3: sam3_f32_tile_3(cr, ldc, xr, k, wf, k, bias, 1, act); break;
    case 4: sam3_f32_tile_4(cr, ldc, xr, k, wf, k, bias, 1, act); break;
    case 5: sam3_f32_tile_5(cr, ldc, xr, k, wf, k, bias, 1, act); break;
    default: break;
  }
  return 0;
}

__attribute__((target("avx512f,avx512bw,avx512bf16")))
int32_t sam3_bf16_tile(float* c, int64_t ldc, const uint16_t* a, int64_t lda, const uint16_t* b,
                       int64_t k2, int64_t rows, const float* bias, int64_t act) {
  switch (rows) {
    case 1: sam3_tile_1(c, ldc, a, lda, b, k2, bias, act); break;
    case 2: sam3_tile_2(c, ldc, a, lda, b, k2, bias, act); break;
    case 3: sam3_tile_3(c, ldc, a, lda, b, k2, bias, act); break;
    case 4: sam3_tile_4(c, ldc, a, lda, b, k2, bias, act); break;
    case 5: sam3_tile_5(c, ldc, a, lda, b, k2, bias, act); break;
    default: sam3_tile_6(c, ldc, a, lda, b, k2, bias, act); break;
  }
  return 0;
}

@AMX_COMMON@
int32_t sam3_amx_available(void) { return sam3_amx_ready(); }
int32_t sam3_bf16_uses_fma(void) { return sam3_bf16_on_fma(); }

/* Rows of x that the AMX path takes: whole 32-row blocks, where AMX is ready and K is a
   multiple of 32. In the bf16 copy of x (sam3_to_bf16_row) those rows lie as 16x32 tiles,
   each 1 KB contiguous: the 16 rows r..r+15 (r a multiple of 16) fill x's rows r..r+15
   of room with their K/32 tiles in k order. A tile load from rows K*2 bytes apart (16
   streams, 2-9 KiB strides for the ViT's K) ran the whole GEMM 1.06-1.4x slower on
   the Xeon of docs/performance.md. The other rows stay row-major at their own offsets. */
static int64_t sam3_amx_rows_of(int64_t m, int64_t k) {
#ifdef SAM3_HAVE_AMX
  if (k % 32 == 0 && m >= 32 && sam3_amx_ready()) return m / 32 * 32;
#endif
  (void)k;
  return 0;
}

/* 1: gemm_func walks x [m, k] in blocks of rows (AMX_BLOCK_BYTES), AMX taking them */
int32_t sam3_bf16_gemm_row_blocks(int64_t m, int64_t k) { return sam3_amx_rows_of(m, k) > 0; }

/* 1: gemm_func takes sam3_bf16_panel_fma for x [m, k]: Intel without AMX for these
   rows, and enough rows to repay widening W (about what 3 rows of products cost) */
int32_t sam3_bf16_gemm_on_fma(int64_t m, int64_t k) {
  return sam3_amx_rows_of(m, k) == 0 && m >= 8 && sam3_bf16_on_fma();
}

#ifdef SAM3_HAVE_AMX
/* tmm0-3: C as 2x2 tiles (32 rows x 32 columns), tmm4-5: A, tmm6-7: B.
   c[0:rows, 0:64] = act(bias + a[0:rows, :] @ b), rows a multiple of 32, a in tiles as
   above (lda = K), b one packed panel with k2 a multiple of 16: each block of 16 pairs of
   k holds the four 16-column B tiles, 1 KB each, one after the other. */
SAM3_AMX static void sam3_amx_rows(float* c, int64_t ldc, const uint16_t* a, int64_t lda,
                                   const uint16_t* b, int64_t k2, int64_t rows,
                                   const float* bias, int64_t act) {
  sam3_amx_config();
  for (int64_t r = 0; r < rows; r += 32) {
    const uint16_t* a0 = a + r * lda;        /* tiles of rows r .. r+15 */
    const uint16_t* a1 = a + (r + 16) * lda; /* rows r+16 .. r+31 */
    for (int h = 0; h < 2; ++h) {
      _tile_zero(0);
      _tile_zero(1);
      _tile_zero(2);
      _tile_zero(3);
      const uint16_t* bh = b + 1024 * h; /* column groups 2h, 2h+1: columns 32h .. 32h+31 */
      for (int64_t kb = 0; kb < k2; kb += 16) {
        _tile_loadd(4, a0 + 32 * kb, 64);
        _tile_loadd(5, a1 + 32 * kb, 64);
        _tile_loadd(6, bh + 128 * kb, 64);
        _tile_loadd(7, bh + 128 * kb + 512, 64);
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
      }
      float* cr = c + r * ldc + 32 * h;
      _tile_stored(0, cr, ldc * 4);
      _tile_stored(1, cr + 16, ldc * 4);
      _tile_stored(2, cr + 16 * ldc, ldc * 4);
      _tile_stored(3, cr + 16 * ldc + 16, ldc * 4);
      if (bias || act) {
        __m512 b0 = bias ? _mm512_loadu_ps(bias + 32 * h) : _mm512_setzero_ps();
        __m512 b1 = bias ? _mm512_loadu_ps(bias + 32 * h + 16) : _mm512_setzero_ps();
        for (int i = 0; i < 32; ++i) {
          __m512 v0 = _mm512_add_ps(_mm512_loadu_ps(cr + i * ldc), b0);
          __m512 v1 = _mm512_add_ps(_mm512_loadu_ps(cr + i * ldc + 16), b1);
          if (act == 1) {
            v0 = sam3_gelu(v0);
            v1 = sam3_gelu(v1);
          }
          _mm512_storeu_ps(cr + i * ldc, v0);
          _mm512_storeu_ps(cr + i * ldc + 16, v1);
        }
      }
    }
  }
  _tile_release();
}
#endif

/* One 64-column panel of all `rows` rows of x (the bf16 copy from sam3_to_bf16_row):
   AMX for the rows sam3_amx_rows_of gives, the vdpbf16ps tiles for the rest. */
__attribute__((target("avx512f,avx512bw,avx512bf16")))
int32_t sam3_bf16_panel(float* c, int64_t ldc, const uint16_t* a, int64_t lda, const uint16_t* b,
                        int64_t k2, int64_t rows, const float* bias, int64_t act) {
  int64_t done = sam3_amx_rows_of(rows, lda);
#ifdef SAM3_HAVE_AMX
  if (done) sam3_amx_rows(c, ldc, a, lda, b, k2, done, bias, act);
#endif
  for (int64_t r = done; r < rows; r += 6)
    sam3_bf16_tile(c + r * ldc, ldc, a + r * lda, lda, b, k2, rows - r < 6 ? rows - r : 6, bias, act);
  return 0;
}

/* Round-to-nearest-even fp32 -> bf16, n values. */
__attribute__((target("avx512f,avx512bw,avx512bf16")))
int32_t sam3_to_bf16(uint16_t* y, const float* x, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm256_storeu_si256((__m256i*)(y + i), (__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(x + i)));
  for (; i < n; ++i) {
    uint32_t u;
    memcpy(&u, x + i, 4);
    y[i] = (uint16_t)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
  }
  return 0;
}

/* Row r of x [m, k] -> bf16 (round to nearest even), in the layout sam3_bf16_panel reads:
   a row of 16x32 tiles for the AMX rows, row-major for the others. */
__attribute__((target("avx512f,avx512bw,avx512bf16")))
int32_t sam3_to_bf16_row(uint16_t* y, const float* x, int64_t m, int64_t k, int64_t r) {
  if (r >= sam3_amx_rows_of(m, k)) return sam3_to_bf16(y + r * k, x + r * k, k);
  uint16_t* t = y + (r - r % 16) * k + (r % 16) * 32;
  for (int64_t j = 0; j < k; j += 32) {
    __m512bh v = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(x + r * k + j + 16), _mm512_loadu_ps(x + r * k + j));
    _mm512_storeu_si512(t + 16 * j, (__m512i)v);
  }
  return 0;
}

#ifdef __cplusplus
}
#endif
""".replace("@AMX_COMMON@", AMX_COMMON).replace("@GELU@", GELU_C).replace("@F32_TILE@", F32_TILE_C)
C_SOURCE = C_SOURCE.replace("@FMA_CHOICE@", FMA_CHOICE_C)


def c_module():
    """The micro-kernels as a C source module (compiled by `export_library`)."""
    create = tvm.get_global_func("runtime.CSourceModuleCreate")
    return create(C_SOURCE, "c", ["sam3_bf16_tile", "sam3_bf16_panel", "sam3_to_bf16",
                                    "sam3_to_bf16_row", "sam3_amx_available",
                                    "sam3_bf16_uses_fma", "sam3_bf16_gemm_on_fma", "sam3_bf16_gemm_row_blocks",
                                    "sam3_bf16_panel_fma"], [])


def _round_bf16(x):
    u = tirx.reinterpret("uint32", x)
    one = tirx.const(1, "uint32")
    return ((u + tirx.const(0x7FFF, "uint32") + ((u >> tirx.const(16, "uint32")) & one))
            >> tirx.const(16, "uint32")).astype("uint16")


def pack_func(k: int, n: int):
    """W [K, N] fp32 -> bf16 bits, shape [N/64, K/2, 64, 2] (run at compile time by lift).

    Inside each 64-column panel the pairs of rows (k = 2i, 2i+1) come in blocks of 16
    pairs; a block holds four groups of 16 columns, each [pairs][16 columns][2]: a full
    block's group is exactly one AMX B tile (16 rows of 64 bytes, 1 KB contiguous), and
    `vdpbf16ps` reads one pair of 16 columns per 64-byte load. The last block has
    K/2 mod 16 pairs when K/2 is not a multiple of 16. (A plain [K/2, 64, 2] panel made
    each AMX tile load 16 rows 256 bytes apart: the whole GEMM 2-30% slower on the Xeon.)"""
    k2 = k // 2
    full, tail = k2 // 16, k2 % 16
    w = te.placeholder((k, n), "float32", name="w")

    def value(p, i, c, t):
        f = i * (PANEL * 2) + c * 2 + t  # position inside the panel
        blk, rem = f // 2048, f % 2048
        if tail:
            # the last, partial block: groups of tail * 32 values
            trem = f - full * 2048
            tg, tr = trem // (tail * 32), trem % (tail * 32)
            pair = tirx.Select(blk < full, blk * 16 + (rem % 512) // 32, full * 16 + tr // 32)
            col = tirx.Select(blk < full, (rem // 512) * 16 + (rem % 32) // 2, tg * 16 + (tr % 32) // 2)
        else:
            pair = blk * 16 + (rem % 512) // 32
            col = (rem // 512) * 16 + (rem % 32) // 2
        return _round_bf16(w[pair * 2 + f % 2, p * PANEL + col])

    out = te.compute((n // PANEL, k2, PANEL, 2), value, name="pack")
    # opaque: FuseTIR mis-merges a producer's buffer into this TE function (TVM 0.27)
    return te.create_prim_func([w, out]).with_attr("op_pattern", 8)


# Rows of x per block on the AMX path: bf16 rows of at most this many bytes together (a
# multiple of 32 rows, the AMX row step). Each panel call used to walk every row of x, so
# x streamed from L3 once per 64-column panel (785 MB for the ViT's fc1); a block of
# 1 MiB stays in the 2 MiB L2 while the panels pass. Xeon model 167, 2 threads, C harness
# of this kernel: qkv 1.34x, proj 1.29x, fc1 1.18x;
# blocks of 256 or 1024 rows of K = 1024 were slower than 512. Where a block would have
# fewer than AMX_MIN_BLOCK rows (long K), one block of all rows, as before: fc2's 96-row
# blocks ran 0.90x in the harness (each block streams all of W from L3 again). The fp32
# kernel (linear_f32) was 0.84-0.98x with this loop: it is not bound by L3 there.
AMX_BLOCK_BYTES = 1 << 20
AMX_MIN_BLOCK = 256


def amx_row_block(k: int) -> int:
    """Rows per block of x [m, k] on the AMX path (AMX_BLOCK_BYTES), or 0: no blocks."""
    rows = AMX_BLOCK_BYTES // (2 * k) // 32 * 32
    return rows if rows >= AMX_MIN_BLOCK else 0


def gemm_func(m: int, k: int, n: int, gelu: bool = False):
    """out[M, N] = bf16(x[M, K]) @ W + bias (then GELU if `gelu`), W packed by `pack_func`."""
    act = 1 if gelu else 0
    rows = amx_row_block(k) or m
    blocks = (m + rows - 1) // rows

    @T.prim_func(private=True)
    def gemm(x: T.Buffer((m, k), "float32"), w: T.Buffer((n // PANEL, k // 2, PANEL, 2), "uint16"),
             bias: T.Buffer((n,), "float32"), out: T.Buffer((m, n), "float32")):
        # opaque (8): FuseOps must not merge producers into the extern calls
        T.func_attr({"sam3.bf16_gemm": True, "tirx.is_scheduled": True, "op_pattern": 8})
        if T.call_extern("int32", "sam3_bf16_gemm_on_fma", T.int64(m), T.int64(k)) != 0:
            for p in T.parallel(n // PANEL):
                # this panel of W widened to fp32 (uint16 room: TVM's storage rewrite merged
                # it with xb's and broke on the mixed types at K = 2)
                wf = T.decl_buffer((2 * k * PANEL,), "uint16")
                T.evaluate(T.call_extern(
                    "int32", "sam3_bf16_panel_fma",
                    out.access_ptr("w", offset=p * PANEL), T.int64(n), x.access_ptr("r", offset=0),
                    wf.access_ptr("w", offset=0), w.access_ptr("r", offset=p * (k // 2) * PANEL * 2),
                    T.int64(k // 2), T.int64(m), bias.access_ptr("r", offset=p * PANEL), T.int64(act)))
        else:
            xb = T.decl_buffer((m, k), "uint16")
            for i in T.parallel(m):
                T.evaluate(T.call_extern("int32", "sam3_to_bf16_row", xb.access_ptr("w", offset=0),
                                         x.access_ptr("r", offset=0), T.int64(m), T.int64(k),
                                         T.Cast("int64", i)))
            if T.call_extern("int32", "sam3_bf16_gemm_row_blocks", T.int64(m), T.int64(k)) != 0:
                # AMX: blocks of `rows` rows of x, each through every panel (in parallel)
                # before the next: the block stays in L2 while the panels stream by
                for blk in range(blocks):
                    for p in T.parallel(n // PANEL):
                        T.evaluate(T.call_extern(
                            "int32", "sam3_bf16_panel",
                            out.access_ptr("w", offset=blk * rows * n + p * PANEL), T.int64(n),
                            xb.access_ptr("r", offset=blk * rows * k), T.int64(k),
                            w.access_ptr("r", offset=p * (k // 2) * PANEL * 2), T.int64(k // 2),
                            T.int64(T.min(rows, m - blk * rows)), bias.access_ptr("r", offset=p * PANEL),
                            T.int64(act)))
            else:
                for p in T.parallel(n // PANEL):
                    T.evaluate(T.call_extern(
                        "int32", "sam3_bf16_panel",
                        out.access_ptr("w", offset=p * PANEL), T.int64(n),
                        xb.access_ptr("r", offset=0), T.int64(k),
                        w.access_ptr("r", offset=p * (k // 2) * PANEL * 2), T.int64(k // 2),
                        T.int64(m), bias.access_ptr("r", offset=p * PANEL), T.int64(act)))

    return gemm


def standalone_library(m: int, k: int, n: int, path: str, gelu: bool = False):
    """`gemm` (x[m,k] @ W + bias, then GELU if `gelu`) and `pack` (W -> bf16 panels) as
    one library at `path`, loaded: the kernel outside a bundle, for the benchmark rows
    and the tests."""
    from sam3_tvm.lowering.targets import host_target

    mod = tvm.IRModule({"gemm": gemm_func(m, k, n, gelu).with_attr("global_symbol", "gemm"),
                        "pack": pack_func(k, n).with_attr("global_symbol", "pack")})
    ex = tvm.compile(mod, target=host_target())
    ex.mod.import_module(c_module())
    ex.export_library(path, options=["-O3"])
    return tvm.runtime.load_module(path)


def _param_only(func: relax.Function) -> set:
    """Vars of `func` computed from its weights alone (the weights included)."""
    num_input = int(func.attrs["num_input"])
    known = set(func.params[num_input:])
    for blk in func.body.blocks:
        for b in blk.bindings:
            v = b.value
            args = list(v.args) if isinstance(v, relax.Call) else [v]
            leaves = [a for a in args if isinstance(a, (relax.Var, tvm.ir.expr.Constant))]
            if leaves and all(isinstance(a, tvm.ir.expr.Constant) or a in known for a in leaves) \
                    and not any(isinstance(a, (relax.Tuple, relax.Call)) for a in args):
                known.add(b.var)
    return known


def _plan(func: relax.Function, k_multiple: int = 2):
    """{matmul var: (bias-add binding or None, GELU binding or None, reshape binding between
    them or None)} for the linears that take the bf16 kernel. A GELU after the linear (and
    its bias, and at most a reshape) runs in the kernel's epilogue when every value in
    between has that one user inside the dataflow block."""
    weights = _param_only(func)
    bindings = [b for blk in func.body.blocks for b in blk.bindings]
    users: dict = {}
    for b in bindings:
        for a in relax.analysis.free_vars(b.value):
            users.setdefault(a, []).append(b)

    def only_user(var, op):
        us = users.get(var, [])
        if (len(us) == 1 and isinstance(var, relax.DataflowVar) and isinstance(us[0].value, relax.Call)
                and getattr(us[0].value.op, "name", "") == op):
            return us[0]
        return None

    plan = {}
    for b in bindings:
        v = b.value
        if not (isinstance(v, relax.Call) and getattr(v.op, "name", "") == "relax.matmul"):
            continue
        x, w = v.args
        xs, ws = static_shape(x), static_shape(w)
        if (w not in weights or x in weights or xs is None or ws is None or len(ws) != 2
                or str(x.ty.dtype) != "float32" or str(w.ty.dtype) != "float32"
                or ws[0] % k_multiple or ws[1] % PANEL):
            continue
        bias = only_user(b.var, "relax.add")
        if bias is not None:
            other = [a for a in bias.value.args if not a.same_as(b.var)]
            if not (len(other) == 1 and other[0] in weights and static_shape(other[0]) == [ws[1]]):
                bias = None
        last = bias.var if bias is not None else b.var
        mid = only_user(last, "relax.reshape")
        gelu = only_user(mid.var if mid is not None else last, "relax.nn.gelu")
        if gelu is None:
            mid = None
        plan[b.var] = (bias, gelu, mid)
    return plan


@relax.expr_functor.mutator
class _Rewriter(relax.PyExprMutator):
    def __init__(self, mod, plan, kind):
        super().__init__(mod)
        self.plan = plan
        self.kind = kind
        # bindings computed inside the kernel call, emitted with their matmul
        self.fused = {x.var for parts in plan.values() for x in parts if x is not None}
        self.funcs: dict = {}

    def _gv(self, key, make):
        if key not in self.funcs:
            name = self.kind.prefix + "_".join(map(str, key))
            self.funcs[key] = self.builder_.add_func(make().with_attr("global_symbol", name), name)
        return self.funcs[key]

    def _emit(self, expr, like):
        if isinstance(like, relax.DataflowVar):
            return self.builder_.emit(expr)
        return self.builder_.emit_output(expr)

    def visit_var_binding_(self, binding):
        var = binding.var
        if var in self.fused:
            return  # emitted with its matmul
        if var not in self.plan:
            return super().visit_var_binding_(binding)
        x, w = (self.visit_expr(a) for a in binding.value.args)
        xs, (k, n) = static_shape(x), static_shape(w)
        m = 1
        for d in xs[:-1]:
            m *= d
        add, gelu, _ = self.plan[var]
        if add is None:
            bias = relax.const(np.zeros(n, "float32"))
        else:
            bias = self.visit_expr([a for a in add.value.args if not a.same_as(var)][0])
        kind = self.kind
        pack = self._gv(("pack", k, n), lambda: kind.pack(k, n))
        key = ("gemm", m, k, n) + (("gelu",) if gelu is not None else ())
        gemm = self._gv(key, lambda: kind.gemm(m, k, n, gelu is not None))
        bb = self.builder_
        packed = bb.emit(relax.call_tir(pack, [w], relax.TensorType(*kind.packed_type(k, n))))
        x2 = bb.emit(relax.op.reshape(x, (m, k))) if len(xs) != 2 else x
        y = bb.emit(relax.call_tir(gemm, [x2, packed, bias], relax.TensorType((m, n), "float32")))
        out_var = gelu.var if gelu is not None else add.var if add is not None else var
        shape = static_shape(out_var)  # the GELU's, after a reshape it absorbed
        y = self._emit(relax.op.reshape(y, shape) if shape != [m, n] else y, out_var)
        self.set_var_remap(out_var, y)


@dataclasses.dataclass(frozen=True)
class PackedKind:
    """A linear kernel on weights packed at compile time: the functions' name prefix (the
    packed weights are named after the pack function), the pack and gemm PrimFunc
    factories, the packed weight's (shape, dtype) for (K, N), the C module, and what K
    must be a multiple of."""
    prefix: str
    pack: Callable
    gemm: Callable
    packed_type: Callable
    c_module: Callable
    min_k_multiple: int


KIND = PackedKind(prefix="sam3_bf16_", pack=pack_func, gemm=gemm_func,
                  packed_type=lambda k, n: ((n // PANEL, k // 2, PANEL, 2), "uint16"),
                  c_module=c_module, min_k_multiple=2)


def packed_linears(mod: tvm.IRModule, kind: PackedKind) -> tvm.IRModule:
    """Rewrite `main`'s weight matmuls (+ bias, + GELU) to `kind`'s kernel; attach its C."""
    func = mod["main"]
    plan = _plan(func, kind.min_k_multiple)
    if not plan:
        return mod
    rw = _Rewriter(mod, plan, kind)
    new = rw.visit_expr(func)
    gv = mod.get_global_var("main")
    out = rw.builder_.get()
    out[gv] = new
    out = relax.transform.DeadCodeElimination()(out)
    mods = list(out.attrs["external_mods"]) if out.attrs is not None and "external_mods" in out.attrs else []
    return out.with_attr("external_mods", mods + [kind.c_module()])


def bf16_linears(mod: tvm.IRModule) -> tvm.IRModule:
    """Rewrite `main`'s weight matmuls (+ bias) to the bf16 kernel; attach the C kernels."""
    return packed_linears(mod, KIND)
