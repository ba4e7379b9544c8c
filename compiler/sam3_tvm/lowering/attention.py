"""Fused attention for CPU targets: softmax(q k^T * scale) v in one kernel.

Without it, an attention is three kernels (scores, softmax, weighted sum) with the
score matrix written to memory and read twice: 16 x 5184^2 floats (1.7 GB) for one
global ViT block, processed in query blocks of 64 MB (export.query_blocks). Here each
task takes up to ROWS queries of one (batch, head) and walks the keys in blocks of
KEYS, keeping the running row maximum, row sum and output rows (the online softmax of
flash attention): the scores never leave a ROWS x KEYS tile on the stack.

The inner loops are C with GCC vector extensions (16 lanes where the target has
AVX-512, 8 with AVX2), compiled into the component's library like the bf16 kernels
(bf16.py): TVM 0.27's TIR gives no control over register tiles across the two
matrix products and the row-wise softmax in between. A TIR function parallelises the
tasks over (batch*head, query block). The scores are kept in base 2 (scale and bias
times log2 e) and 2^x is a polynomial (relative error ~1.3e-7), so it vectorises. The importer hands the kernel the keys transposed
([d, lk]), so no query block transposes them again.

bf16 bundles (`to_bf16`): the same kernel with both products on `vdpbf16ps`; each head's
keys and values are packed into its pair layouts once per call (1.5x the fp32 kernel's
speed on the ViT's attention, Zen 4).

export.py routes every attention of the model here on x86 CPU targets, masked ones too
(the mask as a float bias, one row per query or, for padding masks, one row of per-key
terms), with static or symbolic lengths: the ViT's windowed and global blocks, the text
encoder, the fusion encoder and decoder (`nn.MultiheadAttention` calls included), the
geometry encoder, the SAM decoder's two-way transformer, the tracker's memory attention.
"""

from __future__ import annotations

import tvm
from tvm import relax
from tvm.script import tirx as T

from sam3_tvm.lowering.bf16 import AMX_COMMON, FMA_CHOICE_C, PAIRS_C

ROWS = 64  # queries per task
KEYS = 64  # keys per block of the online softmax

C_TEMPLATE = r"""
#include <stdint.h>
#include <string.h>

/* BF16: the bf16 build (`--precision bf16`, AVX512_BF16): q, k, the softmax weights and v
   rounded to bf16 for the two products on vdpbf16ps (two multiply-adds per fp32 lane),
   accumulated in fp32; the softmax in fp32 */
#define BF16 @BF16@
#include <immintrin.h>
#if BF16
#define KT_T uint16_t
#define V_T uint16_t
#define ATTN_NAME sam3_attention_bf16
#else
#define KT_T float
#define V_T float
#define ATTN_NAME sam3_attention
#endif

#define VW @LANES@
/* vectors per register tile row: 4 rows x NVMAX accumulators (+ NVMAX loads + 1 broadcast)
   fit in 32 zmm (AVX-512) or 16 ymm (AVX2) registers */
#define NVMAX @NVMAX@
/* rows of the fp32 products' register tiles: with AVX2, 6 x 2 accumulators (+ 2 loads + 1
   broadcast = 15 of 16 ymm): Zen 2 has 2 FMA pipes of latency 5, so 4 x 2 independent
   chains left a fifth of them idle (70% -> ~85% of peak on the two products) */
#define TROWS @TROWS@
#define ROWS @ROWS@
#define KEYS @KEYS@
/* rows of the on-stack tiles: ROWS rounded up to the 4-row register tiles, and to the
   16-row AMX tiles in the bf16 build */
#if BF16
#define RPAD (ROWS + 15)
#else
#define RPAD (ROWS + 3)
#endif
#define SAM3_ATTN __attribute__((target("@ISA@")))
#define SAM3_INLINE __attribute__((target("@ISA@"), always_inline)) static inline

typedef float vf __attribute__((vector_size(VW * 4)));
typedef int32_t vi __attribute__((vector_size(VW * 4)));

SAM3_INLINE vf vload(const float* p) { vf v; memcpy(&v, p, sizeof v); return v; }
SAM3_INLINE void vstore(float* p, vf v) { memcpy(p, &v, sizeof v); }
#if VW == 16
SAM3_INLINE vf vset(float x) { return (vf){x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x}; }
#else
SAM3_INLINE vf vset(float x) { return (vf){x, x, x, x, x, x, x, x}; }
#endif

/* 2^x for x <= 0: the scores are kept in base 2 (scale and bias multiplied by log2 e once,
   so softmax's e^(s - max) = 2^(s log2e - max)), and 2^x needs no multiply by log2 e and
   no two-constant ln 2 reduction: n = round(x), r = x - n exact, |r| <= 1/2, 2^r a Taylor
   polynomial in r ln 2 (coefficients (ln 2)^k / k!), degree 6 (|rel err| < 1.3e-7 at
   |r| = 1/2); the bf16 build, whose weights are rounded to 8 bits anyway, degree 4
   (< 4.3e-5). x clamped at -126 (masked scores are -inf: weight 2^-126 ~ 1.2e-38, nothing
   against a row sum >= 1). 10 operations where e^x took 14 (AVX-512) or 16 (AVX2): on
   Zen 4 every 512-bit operation counts (the softmax was a third of the bf16 kernel at
   head width 64), on Zen 2 the softmax was a fifth of the fp32 kernel. */
#if VW == 16
SAM3_INLINE vf vexp2(vf xin) {
  __m512 x = _mm512_max_ps((__m512)xin, _mm512_set1_ps(-126.0f));
  __m512 n = _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_sub_ps(x, n);
#if BF16
  __m512 p = _mm512_fmadd_ps(r, _mm512_set1_ps(9.6181291076e-3f), _mm512_set1_ps(5.5504108665e-2f));
#else
  __m512 p = _mm512_fmadd_ps(r, _mm512_set1_ps(1.5403530393e-4f), _mm512_set1_ps(1.3333558146e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(9.6181291076e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.5504108665e-2f));
#endif
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(2.4022650696e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(6.9314718056e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  return (vf)_mm512_scalef_ps(p, n);
}
#else
/* AVX2: n = round(x) by adding 1.5 * 2^23 with the exponent bias folded in, so the 2^n
   scale is one shift of the sum's bits */
SAM3_INLINE vf vexp2(vf x) {
  x = x < vset(-126.0f) ? vset(-126.0f) : x;
  vf big = x + vset(12582912.0f + 127.0f);
  vf r = x - (big - vset(12582912.0f + 127.0f));
  vf p = vset(1.5403530393e-4f);
  p = p * r + vset(1.3333558146e-3f);
  p = p * r + vset(9.6181291076e-3f);
  p = p * r + vset(5.5504108665e-2f);
  p = p * r + vset(2.4022650696e-1f);
  p = p * r + vset(6.9314718056e-1f);
  p = p * r + vset(1.0f);
  vi e;
  memcpy(&e, &big, sizeof e);
  e = e << 23; /* (127 + n) << 23: the float 2^n */
  vf scale;
  memcpy(&scale, &e, sizeof scale);
  return p * scale;
}
#endif

SAM3_INLINE float sexp2(float x) { vf v = vexp2(vset(x)); return v[0]; }

#define SAM3_LOG2E 1.44269504088896341f

#if VW == 16
SAM3_INLINE float hmax(vf v) { return _mm512_reduce_max_ps((__m512)v); }
SAM3_INLINE float hsum(vf v) { return _mm512_reduce_add_ps((__m512)v); }
#else
SAM3_INLINE float hmax(vf v) {
  __m128 h = _mm_max_ps(_mm256_castps256_ps128((__m256)v), _mm256_extractf128_ps((__m256)v, 1));
  h = _mm_max_ps(h, _mm_movehl_ps(h, h));
  return _mm_cvtss_f32(_mm_max_ss(h, _mm_shuffle_ps(h, h, 1)));
}
SAM3_INLINE float hsum(vf v) {
  __m128 h = _mm_add_ps(_mm256_castps256_ps128((__m256)v), _mm256_extractf128_ps((__m256)v, 1));
  h = _mm_add_ps(h, _mm_movehl_ps(h, h));
  return _mm_cvtss_f32(_mm_add_ss(h, _mm_shuffle_ps(h, h, 1)));
}
#endif

/* s[r][j0:j0+NV*VW] = scale * q[r] . kt[:, j0:...] for R rows (rows past nq repeat the
   last); kt points at the key block's first column of the transposed keys, [d][lk] */
template <int R, int NV>
SAM3_INLINE void scores_t(float (*s)[KEYS], const float* q, int64_t d, int64_t nq, int64_t r0,
                          const float* kt, int64_t lk, float scale, int64_t j0) {
  const float* qr[R];
  for (int r = 0; r < R; ++r) qr[r] = q + (r0 + r < nq ? r0 + r : nq - 1) * d;
  vf a[R][NV];
  for (int r = 0; r < R; ++r) for (int j = 0; j < NV; ++j) a[r][j] = vset(0.0f);
  for (int64_t c = 0; c < d; ++c) {
    const float* kr = kt + c * lk + j0;
    vf b[NV];
    for (int j = 0; j < NV; ++j) b[j] = vload(kr + j * VW);
    for (int r = 0; r < R; ++r) {
      vf x = vset(qr[r][c]);
      for (int j = 0; j < NV; ++j) a[r][j] += x * b[j];
    }
  }
  vf sc = vset(scale);
  for (int r = 0; r < R; ++r)
    for (int j = 0; j < NV; ++j) vstore(s[r0 + r] + j0 + j * VW, a[r][j] * sc);
}

/* acc[r][c0:c0+NV*VW] += sum_k p[r][k] v[k][c0:...] for R rows */
template <int R, int NV>
SAM3_INLINE void pv_t(float (*acc)[@DMAX@], float (*p)[KEYS], int64_t r0, const float* v, int64_t d,
                      int64_t kn, int64_t c0) {
  vf a[R][NV];
  for (int r = 0; r < R; ++r) for (int j = 0; j < NV; ++j) a[r][j] = vload(acc[r0 + r] + c0 + j * VW);
  for (int64_t k = 0; k < kn; ++k) {
    const float* vr = v + k * d + c0;
    vf b[NV];
    for (int j = 0; j < NV; ++j) b[j] = vload(vr + j * VW);
    for (int r = 0; r < R; ++r) {
      vf x = vset(p[r0 + r][k]);
      for (int j = 0; j < NV; ++j) a[r][j] += x * b[j];
    }
  }
  for (int r = 0; r < R; ++r) for (int j = 0; j < NV; ++j) vstore(acc[r0 + r] + c0 + j * VW, a[r][j]);
}

/* TROWS-row register tiles while they fit in nq, then 4-row ones (rows past nq: the
   scores repeat the last query, the weights are zero, nothing of them is written out) */
#define ROW_TILES(CALL) do {                                              \
    int64_t r0 = 0;                                                       \
    for (; r0 + TROWS <= nq; r0 += TROWS) { CALL(TROWS); }                \
    for (; r0 < nq; r0 += 4) { CALL(4); }                                 \
  } while (0)

#if BF16
@AMX_COMMON@
@FMA_CHOICE@

/* 1: the caller runs this call on the fp32 kernel (sam3_attention) instead, with no
   packing: Intel CPUs where AMX does not take head width d (FMA_CHOICE_C: vdpbf16ps at
   half the fp32 FMA rate there); its products are fp32, closer to the exact ones. */
extern "C" int32_t sam3_attention_bf16_on_f32(int64_t d) {
#ifdef SAM3_HAVE_AMX
  if (d % 32 == 0 && sam3_amx_ready()) return 0;
#endif
  return sam3_bf16_on_fma();
}

#ifdef SAM3_HAVE_AMX
/* s[0:rows][0:KEYS] = qb[0:rows] . kp's key block (unscaled), rows a multiple of 16 and
   d of 32: per 16 rows, 4 C tiles of 16 keys (tmm0-3), the queries' A tile (tmm4), the
   keys' B tiles (tmm5-7, reused) */
SAM3_AMX static void scores_amx(float (*s)[KEYS], uint16_t (*qb)[@DMAX@], int64_t rows,
                                const uint16_t* kp, int64_t lkp, int64_t d) {
  for (int64_t r0 = 0; r0 < rows; r0 += 16) {
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    for (int64_t c = 0; c < d; c += 32) {
      const uint16_t* kr = kp + c * lkp; /* pair row c / 2 */
      _tile_loadd(4, qb[r0] + c, @DMAX@ * 2);
      _tile_loadd(5, kr, lkp * 4);
      _tile_dpbf16ps(0, 4, 5);
      _tile_loadd(6, kr + 32, lkp * 4);
      _tile_dpbf16ps(1, 4, 6);
      _tile_loadd(7, kr + 64, lkp * 4);
      _tile_dpbf16ps(2, 4, 7);
      _tile_loadd(5, kr + 96, lkp * 4);
      _tile_dpbf16ps(3, 4, 5);
    }
    _tile_stored(0, s[r0], KEYS * 4);
    _tile_stored(1, s[r0] + 16, KEYS * 4);
    _tile_stored(2, s[r0] + 32, KEYS * 4);
    _tile_stored(3, s[r0] + 48, KEYS * 4);
  }
}

/* acc[0:rows][0:d] += pb[0:rows] . vp's key block (KEYS = 64 keys: two A tiles, tmm4-5),
   32 output columns at a time (C tiles tmm0-1, B tiles tmm6-7) */
SAM3_AMX static void pv_amx(float (*acc)[@DMAX@], uint16_t (*pb)[KEYS], int64_t rows,
                            const uint16_t* vp, int64_t d) {
  for (int64_t r0 = 0; r0 < rows; r0 += 16) {
    _tile_loadd(4, pb[r0], KEYS * 2);
    _tile_loadd(5, pb[r0] + 32, KEYS * 2);
    for (int64_t c0 = 0; c0 < d; c0 += 32) {
      _tile_loadd(0, acc[r0] + c0, @DMAX@ * 4);
      _tile_loadd(1, acc[r0] + c0 + 16, @DMAX@ * 4);
      _tile_loadd(6, vp + 2 * c0, d * 4);
      _tile_dpbf16ps(0, 4, 6);
      _tile_loadd(7, vp + 2 * c0 + 32, d * 4);
      _tile_dpbf16ps(1, 4, 7);
      _tile_loadd(6, vp + 32 * d + 2 * c0, d * 4); /* key pairs 16..31 */
      _tile_dpbf16ps(0, 5, 6);
      _tile_loadd(7, vp + 32 * d + 2 * c0 + 32, d * 4);
      _tile_dpbf16ps(1, 5, 7);
      _tile_stored(0, acc[r0] + c0, @DMAX@ * 4);
      _tile_stored(1, acc[r0] + c0 + 16, @DMAX@ * 4);
    }
  }
}
#endif

@PAIRS@
/* One head's keys and values in the layouts vdpbf16ps multiplies, keys padded with zeros
   to lkp = lk rounded up to KEYS: kp[d/2][lkp][2] (pairs along the head width, from the
   transposed keys kt[d][lk]) and vp[lkp/2][d][2] (pairs along the keys); d % 16 == 0. */
extern "C" SAM3_ATTN int32_t sam3_attention_pack_bf16(uint16_t* kp, uint16_t* vp, const float* kt,
                                                    const float* v, int64_t lk, int64_t d) {
  int64_t lkp = (lk + KEYS - 1) / KEYS * KEYS;
  for (int64_t c2 = 0; c2 < d / 2; ++c2) {
    const float* a = kt + 2 * c2 * lk;
    const float* b = a + lk;
    uint16_t* out = kp + c2 * lkp * 2;
    int64_t j = 0;
    for (; j + 16 <= lk; j += 16) sam3_pairs_bf16(out + 2 * j, a + j, b + j);
    for (; j < lk; ++j) { out[2 * j] = sam3_one_bf16(a[j]); out[2 * j + 1] = sam3_one_bf16(b[j]); }
    for (; j < lkp; ++j) out[2 * j] = out[2 * j + 1] = 0;
  }
  for (int64_t k2 = 0; k2 < lkp / 2; ++k2) {
    uint16_t* out = vp + k2 * d * 2;
    if (2 * k2 >= lk) { memset(out, 0, d * 4); continue; }
    const float* a = v + 2 * k2 * d;
    const float* b = 2 * k2 + 1 < lk ? a + d : 0;
    for (int64_t c = 0; c < d; c += 16) sam3_pairs_bf16(out + 2 * c, a + c, b ? b + c : 0);
  }
  return 0;
}

/* s[r][0:KEYS] = scale * q[r] . k[k0:k0+KEYS] for 4 rows; qb rows in bf16, kp the key
   block's first pair column (kp + 2 * k0 of a head), pair rows 2 * lkp apart */
SAM3_INLINE void scores_bf16_4(float (*s)[KEYS], uint16_t (*qb)[@DMAX@], int64_t r0, const uint16_t* kp,
                               int64_t lkp, int64_t d, float scale) {
  __m512 a[4][KEYS / 16];
  for (int r = 0; r < 4; ++r) for (int j = 0; j < KEYS / 16; ++j) a[r][j] = _mm512_setzero_ps();
  for (int64_t c2 = 0; c2 < d / 2; ++c2) {
    const uint16_t* kr = kp + c2 * lkp * 2;
    __m512bh b[KEYS / 16];
    for (int j = 0; j < KEYS / 16; ++j) b[j] = (__m512bh)_mm512_loadu_si512(kr + 32 * j);
    for (int r = 0; r < 4; ++r) {
      int32_t pair;
      memcpy(&pair, qb[r0 + r] + 2 * c2, 4);
      __m512bh x = (__m512bh)_mm512_set1_epi32(pair);
      for (int j = 0; j < KEYS / 16; ++j) a[r][j] = _mm512_dpbf16_ps(a[r][j], x, b[j]);
    }
  }
  __m512 sc = _mm512_set1_ps(scale);
  for (int r = 0; r < 4; ++r)
    for (int j = 0; j < KEYS / 16; ++j) _mm512_storeu_ps(s[r0 + r] + 16 * j, _mm512_mul_ps(a[r][j], sc));
}

/* acc[r][c0:c0+16*NV] += sum_k p[r][k] v[k0+k][c0:...] for 4 rows; pb the weights in bf16,
   vp the key block's first pair row (vp + k0 * d of a head) */
template <int NV>
SAM3_INLINE void pv_bf16_4(float (*acc)[@DMAX@], uint16_t (*pb)[KEYS], int64_t r0, const uint16_t* vp,
                           int64_t d, int64_t c0) {
  __m512 a[4][NV];
  for (int r = 0; r < 4; ++r) for (int j = 0; j < NV; ++j) a[r][j] = _mm512_loadu_ps(acc[r0 + r] + c0 + 16 * j);
  for (int64_t k2 = 0; k2 < KEYS / 2; ++k2) {
    const uint16_t* vr = vp + (k2 * d + c0) * 2;
    __m512bh b[NV];
    for (int j = 0; j < NV; ++j) b[j] = (__m512bh)_mm512_loadu_si512(vr + 32 * j);
    for (int r = 0; r < 4; ++r) {
      int32_t pair;
      memcpy(&pair, pb[r0 + r] + 2 * k2, 4);
      __m512bh x = (__m512bh)_mm512_set1_epi32(pair);
      for (int j = 0; j < NV; ++j) a[r][j] = _mm512_dpbf16_ps(a[r][j], x, b[j]);
    }
  }
  for (int r = 0; r < 4; ++r) for (int j = 0; j < NV; ++j) _mm512_storeu_ps(acc[r0 + r] + c0 + 16 * j, a[r][j]);
}
#endif

/* o[nq, d] = softmax(scale * q[nq, d] kt[d, lk] + bias[nq, lk]) v[lk, d]; nq <= ROWS,
   d <= DMAX; bias only if has_bias, its rows bias_rs floats apart (lk: one row per query;
   0: one row of per-key terms for every query, e.g. padded keys); a row whose scores are
   all -inf gives zeros (as torch's exported softmax). C linkage for the TIR call (compiled
   as C++). The keys come transposed (kt, [d][lk]): every query block reads the same key
   columns, and transposing them once per call, not once per block of ROWS queries, saved
   up to a quarter of the time at head width 256.
   The bf16 build takes kt and v packed by sam3_attention_pack_bf16 instead. */
extern "C" SAM3_ATTN int32_t ATTN_NAME(float* o, const float* q, const KT_T* kt, const V_T* v,
                                 const float* bias, int64_t has_bias, int64_t bias_rs,
                                 int64_t nq, int64_t lk, int64_t d, float scale) {
  scale *= SAM3_LOG2E; /* scores in base 2 (vexp2) */
  float s[RPAD][KEYS];
  float acc[RPAD][@DMAX@];
  float m[ROWS], l[ROWS];
#if BF16
  int64_t rowsp = (nq + 3) & ~(int64_t)3; /* rows computed: nq padded to the tiles */
#else
  int64_t rowsp = nq + 3; /* rows a 4-row tile after the TROWS-row ones may touch */
#endif
#if BF16 && defined(SAM3_HAVE_AMX)
  int amx = d % 32 == 0 && sam3_amx_ready();
  if (amx) {
    rowsp = (nq + 15) & ~(int64_t)15;
    sam3_amx_config();
  }
#endif
  for (int64_t r = 0; r < ROWS; ++r) { m[r] = -3.0e38f; l[r] = 0.0f; }
  for (int64_t r = 0; r < rowsp; ++r) for (int64_t c = 0; c < d; ++c) acc[r][c] = 0.0f;
#if BF16
  int64_t lkp = (lk + KEYS - 1) / KEYS * KEYS;
  uint16_t qb[RPAD][@DMAX@], pb[RPAD][KEYS];
  for (int64_t r = 0; r < rowsp; ++r) {  /* rows past nq repeat the last */
    const float* qr = q + (r < nq ? r : nq - 1) * d;
    for (int64_t c = 0; c < d; c += 16)
      _mm256_storeu_si256((__m256i*)(qb[r] + c), (__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(qr + c)));
  }
#endif
  for (int64_t k0 = 0; k0 < lk; k0 += KEYS) {
    int64_t kn = lk - k0 < KEYS ? lk - k0 : KEYS;
#if BF16
    /* whole blocks (the keys are padded); only the first kn scores are used */
#ifdef SAM3_HAVE_AMX
    if (amx) {
      scores_amx(s, qb, rowsp, kt + 2 * k0, lkp, d);
      __m512 sc = _mm512_set1_ps(scale);
      for (int64_t r = 0; r < nq; ++r)
        for (int j = 0; j < KEYS; j += 16) _mm512_storeu_ps(s[r] + j, _mm512_mul_ps(_mm512_loadu_ps(s[r] + j), sc));
    } else
#endif
    for (int64_t r0 = 0; r0 < nq; r0 += 4) scores_bf16_4(s, qb, r0, kt + 2 * k0, lkp, d, scale);
#else
    if (kn == KEYS) {
      for (int64_t j0 = 0; j0 < KEYS; j0 += NVMAX * VW) {
#define SCORES(R) scores_t<R, NVMAX>(s, q, d, nq, r0, kt + k0, lk, scale, j0)
        ROW_TILES(SCORES);
#undef SCORES
      }
    } else {  /* the last, partial key block */
      for (int64_t r = 0; r < nq; ++r)
        for (int64_t j = 0; j < kn; ++j) {
          float t = 0.0f;
          for (int64_t c = 0; c < d; ++c) t += q[r * d + c] * kt[c * lk + k0 + j];
          s[r][j] = t * scale;
        }
    }
#endif
    if (has_bias)
      for (int64_t r = 0; r < nq; ++r) {
        const float* br = bias + r * bias_rs + k0;
        for (int64_t j = 0; j < kn; ++j) s[r][j] += br[j] * SAM3_LOG2E;
      }
    /* the online softmax in three passes over the rows: the new row maxima, the rescale
       factors of VW rows per exp, then the weights. One pass per row chained max, exp and
       sum through each row; split, the rows' exps overlap (Zen 2, 64 queries x 5184 keys:
       1.16 -> 1.12 ms a task, the softmax's part 0.24 -> 0.19 ms) */
    float mnew[ROWS], corr[ROWS];
    for (int64_t r = 0; r < nq; ++r) {
      float mx = m[r];
      if (kn == KEYS) {
        vf vm = vload(s[r]);
        for (int64_t j = VW; j < KEYS; j += VW) { vf x = vload(s[r] + j); vm = x > vm ? x : vm; }
        float h = hmax(vm);
        mx = h > mx ? h : mx;
      } else {
        for (int64_t j = 0; j < kn; ++j) mx = s[r][j] > mx ? s[r][j] : mx;
      }
      mnew[r] = mx;
    }
    for (int64_t r = nq; r < ROWS; ++r) mnew[r] = m[r];
    for (int64_t r = 0; r < nq; r += VW) vstore(corr + r, vexp2(vload(m + r) - vload(mnew + r)));
    for (int64_t r = 0; r < nq; ++r) {
      float mx = mnew[r];
      if (mx < -1.0e38f) {  /* every score so far is -inf: nothing to add */
        for (int64_t j = 0; j < kn; ++j) s[r][j] = 0.0f;
        continue;
      }
      m[r] = mx;
      float sum = 0.0f;
      if (kn == KEYS) {
        vf vs = vset(0.0f), vmx = vset(mx);
        for (int64_t j = 0; j < KEYS; j += VW) { vf e = vexp2(vload(s[r] + j) - vmx); vstore(s[r] + j, e); vs += e; }
        sum = hsum(vs);
      } else {
        for (int64_t j = 0; j < kn; ++j) { float e = sexp2(s[r][j] - mx); s[r][j] = e; sum += e; }
      }
      l[r] = l[r] * corr[r] + sum;
      if (corr[r] != 1.0f) for (int64_t c = 0; c < d; ++c) acc[r][c] *= corr[r];
    }
    for (int64_t r = nq; r < rowsp; ++r) for (int64_t j = 0; j < kn; ++j) s[r][j] = 0.0f;
#if BF16
    for (int64_t r = 0; r < rowsp; ++r) {
      int64_t j = 0;
      if (kn == KEYS)
        for (; j < KEYS; j += 16)
          _mm256_storeu_si256((__m256i*)(pb[r] + j), (__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(s[r] + j)));
      for (; j < kn; ++j) pb[r][j] = sam3_one_bf16(s[r][j]);
      for (; j < KEYS; ++j) pb[r][j] = 0;  /* padded keys */
    }
    const uint16_t* vb = v + k0 * d;
#ifdef SAM3_HAVE_AMX
    if (amx) {
      pv_amx(acc, pb, rowsp, vb, d);
      continue;
    }
#endif
    int64_t c0 = 0;
    for (; c0 + 64 <= d; c0 += 64)
      for (int64_t r0 = 0; r0 < nq; r0 += 4) pv_bf16_4<4>(acc, pb, r0, vb, d, c0);
    for (; c0 + 32 <= d; c0 += 32)
      for (int64_t r0 = 0; r0 < nq; r0 += 4) pv_bf16_4<2>(acc, pb, r0, vb, d, c0);
    for (; c0 < d; c0 += 16)
      for (int64_t r0 = 0; r0 < nq; r0 += 4) pv_bf16_4<1>(acc, pb, r0, vb, d, c0);
#else
    const float* vb = v + k0 * d;
    int64_t c0 = 0;
#if NVMAX == 4
    for (; c0 + 4 * VW <= d; c0 += 4 * VW) {
#define PV(R) pv_t<R, 4>(acc, s, r0, vb, d, kn, c0)
      ROW_TILES(PV);
#undef PV
    }
#endif
    for (; c0 + 2 * VW <= d; c0 += 2 * VW) {
#define PV(R) pv_t<R, 2>(acc, s, r0, vb, d, kn, c0)
      ROW_TILES(PV);
#undef PV
    }
    for (; c0 + VW <= d; c0 += VW) {
#define PV(R) pv_t<R, 1>(acc, s, r0, vb, d, kn, c0)
      ROW_TILES(PV);
#undef PV
    }
    for (int64_t r = 0; r < nq; ++r)
      for (int64_t c = c0; c < d; ++c) {
        float t = acc[r][c];
        for (int64_t j = 0; j < kn; ++j) t += s[r][j] * vb[j * d + c];
        acc[r][c] = t;
      }
#endif
  }
#if BF16 && defined(SAM3_HAVE_AMX)
  if (amx) sam3_amx_release();
#endif
  for (int64_t r = 0; r < nq; ++r) {
    float inv = l[r] > 0.0f ? 1.0f / l[r] : 0.0f;
    for (int64_t c = 0; c < d; ++c) o[r * d + c] = acc[r][c] * inv;
  }
  return 0;
}

"""

DMAX = 256  # the widest head (the tracker's memory attention: one head of 256)


def c_source(lanes: int, bf16: bool = False) -> str:
    isa = "avx512f,avx512dq,fma" if lanes >= 16 else "avx2,fma"
    if bf16:
        if lanes < 16:
            raise ValueError("the bf16 attention kernel needs AVX-512 (AVX512_BF16)")
        isa = "avx512f,avx512dq,avx512bw,avx512vl,avx512bf16,fma"
    return (C_TEMPLATE.replace("@LANES@", str(16 if lanes >= 16 else 8)).replace("@ISA@", isa)
            .replace("@NVMAX@", "4" if lanes >= 16 else "2").replace("@TROWS@", "4" if lanes >= 16 else "6").replace("@BF16@", str(int(bf16)))
            .replace("@AMX_COMMON@", AMX_COMMON if bf16 else "")
            .replace("@FMA_CHOICE@", FMA_CHOICE_C if bf16 else "")
            .replace("@PAIRS@", PAIRS_C if bf16 else "").replace("@ROWS@", str(ROWS)).replace("@KEYS@", str(KEYS)).replace("@DMAX@", str(DMAX)))


def c_module(lanes: int, bf16: bool = False):
    create = tvm.get_global_func("runtime.CSourceModuleCreate")
    names = (["sam3_attention_bf16", "sam3_attention_pack_bf16", "sam3_attention_bf16_on_f32"]
             if bf16 else ["sam3_attention"])
    return create(c_source(lanes, bf16), "c", names, [])


def attention_func(bh: int, lq, lk, d: int, scale: float, bias: str | None = None):
    """o[bh, lq, d] = softmax(q kt * scale + bias) v, kt [bh, d, lk] the keys transposed
    (the importer transposes them before the call). `lq`, `lk`: ints, or None for a
    symbolic length (the SAM decoder's point tokens, the memory attention's memories).
    `bias`: None; "rows", a [bh, lq, lk] term per score; "keys", a [bh, 1, lk] term per key
    shared by every query (padding masks: a [bh, lq, lk] copy would be as large as the
    scores)."""
    if bias is not None and bias not in ("rows", "keys"):
        raise ValueError(f"bias must be None, 'rows' or 'keys', not {bias!r}")
    shape = {"bh": bh, "lq": -1 if lq is None else lq, "lk": -1 if lk is None else lk, "d": d,
             "scale": float(scale), "bias": bias or ""}
    return _fp32_func(bh, lq, lk, d, scale, bias).with_attr("sam3.attention_shape", shape)


@T.macro
def _query_blocks(kernel, o, q, keys, values, kv_stride, b, has_bias, bias_rows, bias_rs,
                  bh, blocks, lq, lk, d, scale):
    """The parallel loop of every wrapper: one task per (batch*head, block of ROWS
    queries), calling `kernel` on that head's keys/values (kv_stride elements apart) and
    bias rows. Without a bias, b is any buffer and every bias term is 0 (not read)."""
    for t in T.parallel(bh * blocks):
        T.evaluate(T.call_extern(
            "int32", kernel,
            o.access_ptr("w", offset=(t // blocks) * lq * d + (t % blocks) * ROWS * d),
            q.access_ptr("r", offset=(t // blocks) * lq * d + (t % blocks) * ROWS * d),
            keys.access_ptr("r", offset=(t // blocks) * kv_stride),
            values.access_ptr("r", offset=(t // blocks) * kv_stride),
            b.access_ptr("r", offset=(t // blocks) * bias_rows * lk + (t % blocks) * ROWS * bias_rs),
            T.int64(has_bias), T.int64(bias_rs), T.int64(T.min(ROWS, lq - (t % blocks) * ROWS)),
            T.int64(lk), T.int64(d), T.float32(scale)))


@T.macro
def _pack_bf16(kp, vp, kt, v, per_head, bh, lk, d):
    """Each head's keys and values into the bf16 pair layouts, heads in parallel."""
    for h in T.parallel(bh):
        T.evaluate(T.call_extern(
            "int32", "sam3_attention_pack_bf16", kp.access_ptr("w", offset=h * per_head),
            vp.access_ptr("w", offset=h * per_head), kt.access_ptr("r", offset=h * lk * d),
            v.access_ptr("r", offset=h * lk * d), T.int64(lk), T.int64(d)))


# The wrappers come in pairs (with and without a bias input): a TVMScript function has one
# signature, and a dummy bias input would be one more tensor on every unmasked call.
def _fp32_func(bh, lq, lk, d, scale, bias):
    lq = tvm.tirx.Var("lq", "int64") if lq is None else lq
    lk = tvm.tirx.Var("lk", "int64") if lk is None else lk
    blocks = (lq + ROWS - 1) // ROWS

    if bias is not None:
        bias_rows = lq if bias == "rows" else 1
        bias_rs = lk if bias == "rows" else 0

        @T.prim_func(private=True)
        def attention_bias(q: T.Buffer((bh, lq, d), "float32"), kt: T.Buffer((bh, d, lk), "float32"),
                           v: T.Buffer((bh, lk, d), "float32"), b: T.Buffer((bh, bias_rows, lk), "float32"),
                           o: T.Buffer((bh, lq, d), "float32")):
            # opaque (8): FuseOps must not merge producers into the extern call
            T.func_attr({"sam3.attention": True, "tirx.is_scheduled": True, "op_pattern": 8})
            _query_blocks("sam3_attention", o, q, kt, v, lk * d, b, 1, bias_rows, bias_rs,
                          bh, blocks, lq, lk, d, scale)

        return attention_bias

    @T.prim_func(private=True)
    def attention(q: T.Buffer((bh, lq, d), "float32"), kt: T.Buffer((bh, d, lk), "float32"),
                  v: T.Buffer((bh, lk, d), "float32"), o: T.Buffer((bh, lq, d), "float32")):
        # opaque (8): FuseOps must not merge producers into the extern call
        T.func_attr({"sam3.attention": True, "tirx.is_scheduled": True, "op_pattern": 8})
        _query_blocks("sam3_attention", o, q, kt, v, lk * d, q, 0, 0, 0, bh, blocks, lq, lk, d, scale)

    return attention


def bf16_supported(bh: int, lq, lk, d: int) -> bool:
    """The bf16 kernel's contract: static lengths, a head width that is a multiple of 16."""
    return isinstance(lq, int) and isinstance(lk, int) and lq > 0 and lk > 0 and d % 16 == 0 and d <= DMAX


def attention_bf16_func(bh: int, lq: int, lk: int, d: int, scale: float, bias: str | None = None):
    """`attention_func`'s computation on bf16 products (same inputs: q, kt [bh, d, lk], v,
    bias): one parallel pass packs each head's keys and values (sam3_attention_pack_bf16),
    then the query blocks run in parallel as in the fp32 kernel."""
    if not bf16_supported(bh, lq, lk, d):
        raise ValueError(f"no bf16 attention kernel for lq={lq} lk={lk} d={d}")
    blocks = (lq + ROWS - 1) // ROWS
    lkp = (lk + KEYS - 1) // KEYS * KEYS
    per_head = d * lkp  # uint16 elements of one head's packed keys (and of its values)
    bias_rows = lq if bias == "rows" else 1
    bias_rs = lk if bias == "rows" else 0

    if bias is not None:
        @T.prim_func(private=True)
        def attention_bf16_bias(q: T.Buffer((bh, lq, d), "float32"), kt: T.Buffer((bh, d, lk), "float32"),
                                v: T.Buffer((bh, lk, d), "float32"), b: T.Buffer((bh, bias_rows, lk), "float32"),
                                o: T.Buffer((bh, lq, d), "float32")):
            T.func_attr({"sam3.attention_bf16": True, "tirx.is_scheduled": True, "op_pattern": 8})
            if T.call_extern("int32", "sam3_attention_bf16_on_f32", T.int64(d)) != 0:
                _query_blocks("sam3_attention", o, q, kt, v, lk * d, b, 1, bias_rows, bias_rs,
                              bh, blocks, lq, lk, d, scale)
            else:
                kp = T.decl_buffer((bh * per_head,), "uint16")
                vp = T.decl_buffer((bh * per_head,), "uint16")
                _pack_bf16(kp, vp, kt, v, per_head, bh, lk, d)
                _query_blocks("sam3_attention_bf16", o, q, kp, vp, per_head, b, 1, bias_rows, bias_rs,
                              bh, blocks, lq, lk, d, scale)

        return attention_bf16_bias

    @T.prim_func(private=True)
    def attention_bf16(q: T.Buffer((bh, lq, d), "float32"), kt: T.Buffer((bh, d, lk), "float32"),
                       v: T.Buffer((bh, lk, d), "float32"), o: T.Buffer((bh, lq, d), "float32")):
        T.func_attr({"sam3.attention_bf16": True, "tirx.is_scheduled": True, "op_pattern": 8})
        if T.call_extern("int32", "sam3_attention_bf16_on_f32", T.int64(d)) != 0:
            _query_blocks("sam3_attention", o, q, kt, v, lk * d, q, 0, 0, 0, bh, blocks, lq, lk, d, scale)
        else:
            kp = T.decl_buffer((bh * per_head,), "uint16")
            vp = T.decl_buffer((bh * per_head,), "uint16")
            _pack_bf16(kp, vp, kt, v, per_head, bh, lk, d)
            _query_blocks("sam3_attention_bf16", o, q, kp, vp, per_head, q, 0, 0, 0, bh, blocks, lq, lk, d, scale)

    return attention_bf16


def to_bf16(mod: tvm.IRModule) -> tvm.IRModule:
    """`--precision bf16`: every fused attention whose shape the bf16 kernel takes
    (`bf16_supported`) runs on bf16 products; the others stay fp32."""
    out = mod
    for gv, f in mod.functions.items():
        shape = f.attrs.get("sam3.attention_shape") if isinstance(f, tvm.tirx.PrimFunc) and f.attrs else None
        if shape is None:
            continue
        bh, lq, lk, d = (int(shape[k]) for k in ("bh", "lq", "lk", "d"))
        if lq < 0 or lk < 0 or not bf16_supported(bh, lq, lk, d):
            continue
        bias = str(shape["bias"]) or None
        new = attention_bf16_func(bh, lq, lk, d, float(shape["scale"]), bias)
        if out is mod:
            out = tvm.IRModule(dict(mod.functions), attrs=mod.attrs)
        out[gv] = new
    return out


def supported(target) -> bool:
    """x86 with AVX2 or AVX-512 (the kernel's two builds); elsewhere attention stays
    matmul-softmax-matmul."""
    from sam3_tvm.lowering.schedule import _lanes

    return "x86_64" in str(target.attrs.get("mtriple", "")) and _lanes(target) >= 8


def attach_kernels(mod: tvm.IRModule, target) -> tvm.IRModule:
    """Add the C kernels to `mod`'s external modules when it calls them."""
    from sam3_tvm.lowering.schedule import _lanes

    def uses(attr):
        return any(isinstance(f, tvm.tirx.PrimFunc) and f.attrs is not None and attr in f.attrs
                   for f in mod.functions.values())

    bf16 = uses("sam3.attention_bf16")  # its wrappers may call the fp32 kernel
    new = ([c_module(_lanes(target))] if uses("sam3.attention") or bf16 else []) + \
        ([c_module(_lanes(target), bf16=True)] if bf16 else [])
    if not new:
        return mod
    mods = list(mod.attrs["external_mods"]) if mod.attrs is not None and "external_mods" in mod.attrs else []
    return mod.with_attr("external_mods", mods + new)
