#include "sam3/postprocess.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <string>

#include "sam3/error.h"
#include "sam3/video_postprocess.h"

namespace sam3 {
namespace {

void require(bool ok, const std::string& message) {
  if (!ok) throw Error(message);
}

void require_size(int v, const char* what) {
  require(v > 0, std::string(what) + " must be positive, got " + std::to_string(v));
}

// Source taps of one output axis, as PyTorch's compute_source_index_and_lambda. Its
// kernels are built with FMA contraction on x86-64 (AVX2/AVX512), so the source
// coordinate is one fused multiply-add; the explicit std::fma keeps that rounding
// whatever this file is compiled with.
struct Taps {
  std::vector<std::size_t> i0, i1;
  std::vector<float> w0, w1;
};

Taps linear_taps(int in, int out) {
  Taps t;
  t.i0.resize(out);
  t.i1.resize(out);
  t.w0.resize(out);
  t.w1.resize(out);
  const float scale = static_cast<float>(in) / static_cast<float>(out);
  for (int o = 0; o < out; ++o) {
    if (in == out) {
      t.i0[o] = t.i1[o] = static_cast<std::size_t>(o);
      t.w0[o] = 1.0f;
      t.w1[o] = 0.0f;
      continue;
    }
    float src = std::fma(scale, static_cast<float>(o) + 0.5f, -0.5f);
    if (src < 0.0f) src = 0.0f;
    const int64_t i = std::min<int64_t>(static_cast<int64_t>(std::floor(src)), in - 1);
    const float lambda = std::min(std::max(src - static_cast<float>(i), 0.0f), 1.0f);
    t.i0[o] = static_cast<std::size_t>(i);
    t.i1[o] = static_cast<std::size_t>(i + (i < in - 1 ? 1 : 0));
    t.w1[o] = lambda;
    t.w0[o] = 1.0f - lambda;
  }
  return t;
}

}  // namespace

std::vector<float> resize_bilinear(const float* src, int src_h, int src_w, int dst_h, int dst_w) {
  require(src != nullptr, "resize_bilinear: null source");
  require_size(src_h, "resize_bilinear: source height");
  require_size(src_w, "resize_bilinear: source width");
  require_size(dst_h, "resize_bilinear: target height");
  require_size(dst_w, "resize_bilinear: target width");
  const Taps ty = linear_taps(src_h, dst_h);
  const Taps tx = linear_taps(src_w, dst_w);
  const std::size_t sw = static_cast<std::size_t>(src_w);
  std::vector<float> out(static_cast<std::size_t>(dst_h) * static_cast<std::size_t>(dst_w));
  float* o = out.data();
  // PyTorch picks its kernel by output size (_use_vectorized_kernel_cond_2d): small
  // outputs go through the channels-last kernel, which pre-multiplies the four weights
  // and sums four products; larger ones through the separable generic kernel. The two
  // round differently, so both are reproduced.
  if (dst_h + dst_w <= 128) {
    for (int y = 0; y < dst_h; ++y) {
      const float* r0 = src + ty.i0[y] * sw;
      const float* r1 = src + ty.i1[y] * sw;
      for (int x = 0; x < dst_w; ++x) {
        const float w00 = ty.w0[y] * tx.w0[x], w01 = ty.w0[y] * tx.w1[x];
        const float w10 = ty.w1[y] * tx.w0[x], w11 = ty.w1[y] * tx.w1[x];
        float acc = std::fma(r0[tx.i0[x]], w00, r0[tx.i1[x]] * w01);
        acc = std::fma(r1[tx.i0[x]], w10, acc);
        *o++ = std::fma(r1[tx.i1[x]], w11, acc);
      }
    }
  } else {
    for (int y = 0; y < dst_h; ++y) {
      const float* r0 = src + ty.i0[y] * sw;
      const float* r1 = src + ty.i1[y] * sw;
      for (int x = 0; x < dst_w; ++x) {
        const float top = std::fma(r0[tx.i0[x]], tx.w0[x], r0[tx.i1[x]] * tx.w1[x]);
        const float bottom = std::fma(r1[tx.i0[x]], tx.w0[x], r1[tx.i1[x]] * tx.w1[x]);
        *o++ = std::fma(top, ty.w0[y], bottom * ty.w1[y]);
      }
    }
  }
  return out;
}

float sigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }

std::vector<Detection> select_detections(const float* logits, const float* boxes_cxcywh,
                                         float presence_logit, const float* masks, int num_queries,
                                         int mask_size, int img_h, int img_w, float threshold) {
  require(logits && boxes_cxcywh && masks, "select_detections: null input");
  require_size(num_queries, "select_detections: number of queries");
  require_size(mask_size, "select_detections: mask size");
  require_size(img_h, "select_detections: image height");
  require_size(img_w, "select_detections: image width");

  const float presence = sigmoid(presence_logit);
  std::vector<Detection> kept;
  for (int q = 0; q < num_queries; ++q) {
    const float score = sigmoid(logits[q]) * presence;
    if (score > threshold) kept.push_back(Detection{score, {}, {}, q});
  }
  std::stable_sort(kept.begin(), kept.end(),
                   [](const Detection& a, const Detection& b) { return a.score > b.score; });

  const std::size_t plane = static_cast<std::size_t>(mask_size) * mask_size;
  const float fw = static_cast<float>(img_w), fh = static_cast<float>(img_h);
  for (Detection& d : kept) {
    const float* b = boxes_cxcywh + 4 * static_cast<std::size_t>(d.query);
    // Same float ops as box_cxcywh_to_xyxy followed by the multiply by [W, H, W, H].
    d.box_xyxy = {(b[0] - 0.5f * b[2]) * fw, (b[1] - 0.5f * b[3]) * fh,
                  (b[0] + 0.5f * b[2]) * fw, (b[1] + 0.5f * b[3]) * fh};
    const std::vector<float> up =
        resize_bilinear(masks + plane * static_cast<std::size_t>(d.query), mask_size, mask_size,
                        img_h, img_w);
    d.mask.resize(up.size());
    // sigmoid(v) > 0.5 rather than v > 0: for 0 < v below ~6e-8 the float sigmoid is
    // exactly 0.5, and the official code says background there.
    for (std::size_t i = 0; i < up.size(); ++i) d.mask[i] = sigmoid(up[i]) > 0.5f ? 1 : 0;
  }
  return kept;
}

float stability_score(const float* logits, int count, float delta) {
  require(logits != nullptr, "stability_score: null input");
  require_size(count, "stability_score: count");
  int64_t inter = 0, uni = 0;
  for (int i = 0; i < count; ++i) {
    inter += logits[i] > delta;
    uni += logits[i] > -delta;
  }
  return uni > 0 ? static_cast<float>(inter) / static_cast<float>(uni) : 1.0f;
}

MaskCandidates select_mask_candidates(const float* masks, const float* iou, int mask_size,
                                      bool multimask, bool dynamic_stability) {
  require(masks && iou, "select_mask_candidates: null input");
  require_size(mask_size, "select_mask_candidates: mask size");
  const std::size_t plane = static_cast<std::size_t>(mask_size) * mask_size;
  std::vector<int> chosen;
  if (multimask) {
    chosen = {1, 2, 3};
  } else {
    int pick = 0;
    if (dynamic_stability &&
        !(stability_score(masks, static_cast<int>(plane)) >= kStabilityThreshold)) {
      pick = 1;
      for (int k = 2; k <= 3; ++k)
        if (iou[k] > iou[pick]) pick = k;
    }
    chosen = {pick};
  }
  MaskCandidates c;
  for (int k : chosen) {
    const float* m = masks + plane * static_cast<std::size_t>(k);
    c.logits.insert(c.logits.end(), m, m + plane);
    c.iou.push_back(iou[k]);
    c.index.push_back(k);
  }
  return c;
}

int fill_holes(std::vector<float>& logits, int h, int w, int max_area) {
  require_size(h, "fill_holes: height");
  require_size(w, "fill_holes: width");
  const std::size_t n = static_cast<std::size_t>(h) * static_cast<std::size_t>(w);
  require(logits.size() == n, "fill_holes: expected " + std::to_string(n) + " logits, got " +
                                  std::to_string(logits.size()));
  if (max_area <= 0) return 0;
  std::vector<uint8_t> background(n);
  for (std::size_t i = 0; i < n; ++i) background[i] = logits[i] <= 0.0f;
  const std::vector<int32_t> area = component_areas(background.data(), h, w);
  int filled = 0;
  for (std::size_t i = 0; i < n; ++i) {
    if (background[i] && area[i] <= max_area) {
      logits[i] = kHoleFillLogit;
      ++filled;
    }
  }
  return filled;
}

InteractiveResult best_interactive_mask(const float* masks, const float* iou, int mask_size,
                                        int img_h, int img_w, bool multimask,
                                        bool dynamic_stability, int max_hole_area) {
  require_size(img_h, "best_interactive_mask: image height");
  require_size(img_w, "best_interactive_mask: image width");
  const MaskCandidates c = select_mask_candidates(masks, iou, mask_size, multimask, dynamic_stability);
  int best = 0;
  for (int k = 1; k < c.count(); ++k)
    if (c.iou[k] > c.iou[best]) best = k;

  const std::size_t plane = static_cast<std::size_t>(mask_size) * mask_size;
  const auto first = c.logits.begin() + static_cast<std::ptrdiff_t>(plane * best);
  std::vector<float> chosen(first, first + static_cast<std::ptrdiff_t>(plane));

  InteractiveResult r;
  r.iou = c.iou[best];
  r.index = c.index[best];
  // The predictor hands back the decoder's logits clamped, not the hole-filled ones.
  r.low_res_logits.resize(plane);
  for (std::size_t i = 0; i < plane; ++i)
    r.low_res_logits[i] = std::min(std::max(chosen[i], -kLowResClamp), kLowResClamp);
  fill_holes(chosen, mask_size, mask_size, max_hole_area);
  const std::vector<float> up = resize_bilinear(chosen.data(), mask_size, mask_size, img_h, img_w);
  r.mask.resize(up.size());
  for (std::size_t i = 0; i < up.size(); ++i) r.mask[i] = up[i] > 0.0f ? 1 : 0;
  return r;
}

}  // namespace sam3
