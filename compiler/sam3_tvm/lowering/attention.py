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
tasks over (batch*head, query block). exp is a polynomial (Cephes' expf, relative
error ~1e-7) so it vectorises.

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

ROWS = 64  # queries per task
KEYS = 64  # keys per block of the online softmax

C_TEMPLATE = r"""
#include <stdint.h>
#include <string.h>

#define VW @LANES@
/* vectors per register tile row: 4 rows x NVMAX accumulators (+ NVMAX loads + 1 broadcast)
   fit in 32 zmm (AVX-512) or 16 ymm (AVX2) registers */
#define NVMAX @NVMAX@
#define ROWS @ROWS@
#define KEYS @KEYS@
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

/* e^x for x <= 0 (scores minus their row maximum): Cephes expf, |rel err| ~ 1e-7;
   0 below -87 (masked scores are -inf), where e^x is below FLT_MIN anyway */
SAM3_INLINE vf vexp(vf x) {
  vf under = x < vset(-87.0f) ? vset(0.0f) : vset(1.0f);
  x = x < vset(-87.0f) ? vset(-87.0f) : x;
  vf t = x * vset(1.44269504088896341f);
  vf n = (t + vset(12582912.0f)) - vset(12582912.0f); /* round to nearest */
  vf r = x - n * vset(0.693359375f) + n * vset(2.12194440e-4f);
  vf p = vset(1.9875691500e-4f);
  p = p * r + vset(1.3981999507e-3f);
  p = p * r + vset(8.3334519073e-3f);
  p = p * r + vset(4.1665795894e-2f);
  p = p * r + vset(1.6666665459e-1f);
  p = p * r + vset(5.0000001201e-1f);
  p = p * r * r + r + vset(1.0f);
  vi e = (__builtin_convertvector(n, vi) + 127) << 23;
  vf scale; memcpy(&scale, &e, sizeof scale);
  return p * scale * under;
}

SAM3_INLINE float sexp(float x) { vf v = vexp(vset(x)); return v[0]; }

SAM3_INLINE float hmax(vf v) { float m = v[0]; for (int i = 1; i < VW; ++i) m = v[i] > m ? v[i] : m; return m; }
SAM3_INLINE float hsum(vf v) { float s = 0; for (int i = 0; i < VW; ++i) s += v[i]; return s; }

/* s[r][j0:j0+NV*VW] = scale * q[r] . kt[:, j0:...] for 4 rows (rows past nq repeat the
   last); kt is the key block transposed, [d][KEYS] */
template <int NV>
SAM3_INLINE void scores_4(float (*s)[KEYS], const float* q, int64_t d, int64_t nq, int64_t r0,
                          const float* kt, float scale, int64_t j0) {
  const float* qr[4];
  for (int r = 0; r < 4; ++r) qr[r] = q + (r0 + r < nq ? r0 + r : nq - 1) * d;
  vf a[4][NV];
  for (int r = 0; r < 4; ++r) for (int j = 0; j < NV; ++j) a[r][j] = vset(0.0f);
  for (int64_t c = 0; c < d; ++c) {
    const float* kr = kt + c * KEYS + j0;
    vf b[NV];
    for (int j = 0; j < NV; ++j) b[j] = vload(kr + j * VW);
    for (int r = 0; r < 4; ++r) {
      vf x = vset(qr[r][c]);
      for (int j = 0; j < NV; ++j) a[r][j] += x * b[j];
    }
  }
  vf sc = vset(scale);
  for (int r = 0; r < 4; ++r)
    for (int j = 0; j < NV; ++j) vstore(s[r0 + r] + j0 + j * VW, a[r][j] * sc);
}

/* acc[r][c0:c0+NV*VW] += sum_k p[r][k] v[k][c0:...] for 4 rows */
template <int NV>
SAM3_INLINE void pv_4(float (*acc)[@DMAX@], float (*p)[KEYS], int64_t r0, const float* v, int64_t d,
                      int64_t kn, int64_t c0) {
  vf a[4][NV];
  for (int r = 0; r < 4; ++r) for (int j = 0; j < NV; ++j) a[r][j] = vload(acc[r0 + r] + c0 + j * VW);
  for (int64_t k = 0; k < kn; ++k) {
    const float* vr = v + k * d + c0;
    vf b[NV];
    for (int j = 0; j < NV; ++j) b[j] = vload(vr + j * VW);
    for (int r = 0; r < 4; ++r) {
      vf x = vset(p[r0 + r][k]);
      for (int j = 0; j < NV; ++j) a[r][j] += x * b[j];
    }
  }
  for (int r = 0; r < 4; ++r) for (int j = 0; j < NV; ++j) vstore(acc[r0 + r] + c0 + j * VW, a[r][j]);
}

/* o[nq, d] = softmax(scale * q[nq, d] k[lk, d]^T + bias[nq, lk]) v[lk, d]; nq <= ROWS,
   d <= DMAX; bias only if has_bias, its rows bias_rs floats apart (lk: one row per query;
   0: one row of per-key terms for every query, e.g. padded keys); a row whose scores are
   all -inf gives zeros (as torch's exported softmax). C linkage for the TIR call (compiled
   as C++). */
extern "C" SAM3_ATTN int32_t sam3_attention(float* o, const float* q, const float* k, const float* v,
                                 const float* bias, int64_t has_bias, int64_t bias_rs,
                                 int64_t nq, int64_t lk, int64_t d, float scale) {
  float s[ROWS + 3][KEYS];
  float acc[ROWS + 3][@DMAX@];
  float kt[@DMAX@ * KEYS];
  float m[ROWS], l[ROWS];
  int64_t rows4 = (nq + 3) & ~(int64_t)3;
  for (int64_t r = 0; r < nq; ++r) { m[r] = -3.0e38f; l[r] = 0.0f; }
  for (int64_t r = 0; r < rows4; ++r) for (int64_t c = 0; c < d; ++c) acc[r][c] = 0.0f;
  for (int64_t k0 = 0; k0 < lk; k0 += KEYS) {
    int64_t kn = lk - k0 < KEYS ? lk - k0 : KEYS;
    if (kn == KEYS) {
      /* the key block transposed into a contiguous [d][KEYS] tile: rows of one page-sized
         stripe instead of d loads lk floats apart */
      for (int64_t j = 0; j < KEYS; ++j) {
        const float* kr = k + (k0 + j) * d;
        for (int64_t c = 0; c < d; ++c) kt[c * KEYS + j] = kr[c];
      }
      for (int64_t r0 = 0; r0 < nq; r0 += 4)
        for (int64_t j0 = 0; j0 < KEYS; j0 += NVMAX * VW) scores_4<NVMAX>(s, q, d, nq, r0, kt, scale, j0);
    } else {  /* the last, partial key block */
      for (int64_t r = 0; r < nq; ++r)
        for (int64_t j = 0; j < kn; ++j) {
          float t = 0.0f;
          for (int64_t c = 0; c < d; ++c) t += q[r * d + c] * k[(k0 + j) * d + c];
          s[r][j] = t * scale;
        }
    }
    if (has_bias)
      for (int64_t r = 0; r < nq; ++r) {
        const float* br = bias + r * bias_rs + k0;
        for (int64_t j = 0; j < kn; ++j) s[r][j] += br[j];
      }
    for (int64_t r = 0; r < nq; ++r) {
      float mx = m[r];
      int64_t j = 0;
      if (kn == KEYS) {
        vf vm = vload(s[r]);
        for (j = VW; j < KEYS; j += VW) { vf x = vload(s[r] + j); vm = x > vm ? x : vm; }
        float h = hmax(vm);
        mx = h > mx ? h : mx;
      } else {
        for (; j < kn; ++j) mx = s[r][j] > mx ? s[r][j] : mx;
      }
      if (mx < -1.0e38f) {  /* every score so far is -inf: nothing to add */
        for (j = 0; j < kn; ++j) s[r][j] = 0.0f;
        continue;
      }
      float corr = sexp(m[r] - mx);
      m[r] = mx;
      float sum = 0.0f;
      if (kn == KEYS) {
        vf vs = vset(0.0f), vmx = vset(mx);
        for (j = 0; j < KEYS; j += VW) { vf e = vexp(vload(s[r] + j) - vmx); vstore(s[r] + j, e); vs += e; }
        sum = hsum(vs);
      } else {
        for (j = 0; j < kn; ++j) { float e = sexp(s[r][j] - mx); s[r][j] = e; sum += e; }
      }
      l[r] = l[r] * corr + sum;
      if (corr != 1.0f) for (int64_t c = 0; c < d; ++c) acc[r][c] *= corr;
    }
    for (int64_t r = nq; r < rows4; ++r) for (int64_t j = 0; j < kn; ++j) s[r][j] = 0.0f;
    const float* vb = v + k0 * d;
    int64_t c0 = 0;
#if NVMAX == 4
    for (; c0 + 4 * VW <= d; c0 += 4 * VW)
      for (int64_t r0 = 0; r0 < nq; r0 += 4) pv_4<4>(acc, s, r0, vb, d, kn, c0);
#endif
    for (; c0 + 2 * VW <= d; c0 += 2 * VW)
      for (int64_t r0 = 0; r0 < nq; r0 += 4) pv_4<2>(acc, s, r0, vb, d, kn, c0);
    for (; c0 + VW <= d; c0 += VW)
      for (int64_t r0 = 0; r0 < nq; r0 += 4) pv_4<1>(acc, s, r0, vb, d, kn, c0);
    for (int64_t r = 0; r < nq; ++r)
      for (int64_t c = c0; c < d; ++c) {
        float t = acc[r][c];
        for (int64_t j = 0; j < kn; ++j) t += s[r][j] * vb[j * d + c];
        acc[r][c] = t;
      }
  }
  for (int64_t r = 0; r < nq; ++r) {
    float inv = l[r] > 0.0f ? 1.0f / l[r] : 0.0f;
    for (int64_t c = 0; c < d; ++c) o[r * d + c] = acc[r][c] * inv;
  }
  return 0;
}

"""

DMAX = 256  # the widest head (the tracker's memory attention: one head of 256)


def c_source(lanes: int) -> str:
    isa = "avx512f,avx512dq,fma" if lanes >= 16 else "avx2,fma"
    return (C_TEMPLATE.replace("@LANES@", str(16 if lanes >= 16 else 8)).replace("@ISA@", isa)
            .replace("@NVMAX@", "4" if lanes >= 16 else "2")
            .replace("@ROWS@", str(ROWS)).replace("@KEYS@", str(KEYS)).replace("@DMAX@", str(DMAX)))


def c_module(lanes: int):
    create = tvm.get_global_func("runtime.CSourceModuleCreate")
    return create(c_source(lanes), "c", ["sam3_attention"], [])


def attention_func(bh: int, lq, lk, d: int, scale: float, bias: str | None = None):
    """o[bh, lq, d] = softmax(q k^T * scale + bias) v. `lq`, `lk`: ints, or None for a
    symbolic length (the SAM decoder's point tokens, the memory attention's memories).
    `bias`: None; "rows", a [bh, lq, lk] term per score; "keys", a [bh, 1, lk] term per key
    shared by every query (padding masks: a [bh, lq, lk] copy would be as large as the
    scores)."""
    lq = tvm.tirx.Var("lq", "int64") if lq is None else lq
    lk = tvm.tirx.Var("lk", "int64") if lk is None else lk
    blocks = (lq + ROWS - 1) // ROWS
    if bias is not None and bias not in ("rows", "keys"):
        raise ValueError(f"bias must be None, 'rows' or 'keys', not {bias!r}")

    if bias is not None:
        bias_rows = lq if bias == "rows" else 1
        bias_rs = lk if bias == "rows" else 0

        @T.prim_func(private=True)
        def attention_bias(q: T.Buffer((bh, lq, d), "float32"), k: T.Buffer((bh, lk, d), "float32"),
                           v: T.Buffer((bh, lk, d), "float32"), b: T.Buffer((bh, bias_rows, lk), "float32"),
                           o: T.Buffer((bh, lq, d), "float32")):
            # opaque (8): FuseOps must not merge producers into the extern call
            T.func_attr({"sam3.attention": True, "tirx.is_scheduled": True, "op_pattern": 8})
            for t in T.parallel(bh * blocks):
                T.evaluate(T.call_extern(
                    "int32", "sam3_attention",
                    o.access_ptr("w", offset=(t // blocks) * lq * d + (t % blocks) * ROWS * d),
                    q.access_ptr("r", offset=(t // blocks) * lq * d + (t % blocks) * ROWS * d),
                    k.access_ptr("r", offset=(t // blocks) * lk * d),
                    v.access_ptr("r", offset=(t // blocks) * lk * d),
                    b.access_ptr("r", offset=(t // blocks) * bias_rows * lk + (t % blocks) * ROWS * bias_rs),
                    T.int64(1), T.int64(bias_rs), T.int64(T.min(ROWS, lq - (t % blocks) * ROWS)),
                    T.int64(lk), T.int64(d), T.float32(scale)))

        return attention_bias

    @T.prim_func(private=True)
    def attention(q: T.Buffer((bh, lq, d), "float32"), k: T.Buffer((bh, lk, d), "float32"),
                  v: T.Buffer((bh, lk, d), "float32"), o: T.Buffer((bh, lq, d), "float32")):
        # opaque (8): FuseOps must not merge producers into the extern call
        T.func_attr({"sam3.attention": True, "tirx.is_scheduled": True, "op_pattern": 8})
        for t in T.parallel(bh * blocks):
            T.evaluate(T.call_extern(
                "int32", "sam3_attention",
                o.access_ptr("w", offset=(t // blocks) * lq * d + (t % blocks) * ROWS * d),
                q.access_ptr("r", offset=(t // blocks) * lq * d + (t % blocks) * ROWS * d),
                k.access_ptr("r", offset=(t // blocks) * lk * d),
                v.access_ptr("r", offset=(t // blocks) * lk * d),
                q.access_ptr("r"), T.int64(0), T.int64(0),  # no bias (the pointer is not read)
                T.int64(T.min(ROWS, lq - (t % blocks) * ROWS)), T.int64(lk), T.int64(d),
                T.float32(scale)))

    return attention


def supported(target) -> bool:
    """x86 with AVX2 or AVX-512 (the kernel's two builds); elsewhere attention stays
    matmul-softmax-matmul."""
    from sam3_tvm.lowering.schedule import _lanes

    return "x86_64" in str(target.attrs.get("mtriple", "")) and _lanes(target) >= 8


def attach_kernels(mod: tvm.IRModule, target) -> tvm.IRModule:
    """Add the C kernels to `mod`'s external modules when it calls them."""
    from sam3_tvm.lowering.schedule import _lanes

    uses = any(isinstance(f, tvm.tirx.PrimFunc) and f.attrs is not None and "sam3.attention" in f.attrs
               for f in mod.functions.values())
    if not uses:
        return mod
    mods = list(mod.attrs["external_mods"]) if mod.attrs is not None and "external_mods" in mod.attrs else []
    return mod.with_attr("external_mods", mods + [c_module(_lanes(target))])
