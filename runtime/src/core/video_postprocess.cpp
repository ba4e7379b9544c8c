#include "sam3/video_postprocess.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "sam3/error.h"
#include "sam3/postprocess.h"

namespace sam3 {
namespace {

void require(bool ok, const std::string& message) {
  if (!ok) throw Error(message);
}

// One axis of PyTorch's antialiased resampling (UpSampleKernel.cpp,
// _compute_weights_aa with the bilinear "aa" filter). For output i: taps start at
// first[i], count[i] of them, weights w[i * stride + j], already normalised.
struct AxisTaps {
  std::vector<int> first, count;
  std::vector<float> w;
  int stride = 0;
};

AxisTaps aa_taps(int in, int out) {
  // PyTorch computes the scale and the weights in the tensor's float type
  const float scale = static_cast<float>(in) / static_cast<float>(out);
  const float support = scale >= 1.0f ? 1.0f * scale : 1.0f;  // interp_size/2 = 1
  const float invscale = scale >= 1.0f ? 1.0f / scale : 1.0f;
  AxisTaps t;
  t.stride = static_cast<int>(std::ceil(support)) * 2 + 1;
  t.first.resize(out);
  t.count.resize(out);
  t.w.assign(static_cast<std::size_t>(out) * t.stride, 0.0f);
  for (int i = 0; i < out; ++i) {
    const float center = static_cast<float>(static_cast<double>(scale) * (i + 0.5));
    const int64_t xmin = std::max<int64_t>(static_cast<int64_t>(center - support + 0.5), 0);
    const int64_t xmax = std::min<int64_t>(static_cast<int64_t>(center + support + 0.5), in);
    const int n = static_cast<int>(std::min<int64_t>(xmax - xmin, t.stride));
    float* w = &t.w[static_cast<std::size_t>(i) * t.stride];
    float total = 0.0f;
    for (int j = 0; j < n; ++j) {
      const float x = static_cast<float>(
          (static_cast<double>(static_cast<float>(j + xmin) - center) + 0.5) * invscale);
      const float ax = std::fabs(x);
      w[j] = ax < 1.0f ? 1.0f - ax : 0.0f;
      total += w[j];
    }
    if (total != 0.0f)
      for (int j = 0; j < n; ++j) w[j] /= total;
    t.first[i] = static_cast<int>(xmin);
    t.count[i] = n;
  }
  return t;
}

// One output value: the taps summed in order, as PyTorch's float kernel
// (interpolate_aa_single_dim[_zero_strides]: `output = t0 * w0; output += tj * wj`) runs
// in the AVX2 / AVX512 builds of the torch wheels. GCC vectorises that loop as an in-order
// reduction: it rounds four products at a time (vmulps) and adds them to the accumulator
// one by one, then finishes the (n - 1) % 4 remaining taps in a scalar epilogue where the
// multiply-add is contracted into an FMA. So with n taps, taps 1 .. 4 * ((n - 1) / 4) are
// added as rounded products and the rest are fused; upsampling (2 or 3 taps) is all FMA.
// (torch's non-FMA DEFAULT build, ATEN_CPU_CAPABILITY=default, rounds every product.)
template <class At>
float sum_taps(const At& at, const float* w, int n) {
  float acc = at(0) * w[0];
  const int rounded = ((n - 1) / 4) * 4;
  int j = 1;
  for (; j <= rounded; ++j) {
    // volatile: the product is rounded to float whatever contraction the compiler allows
    volatile float p = at(j) * w[j];
    acc += p;
  }
  for (; j < n; ++j) acc = std::fma(at(j), w[j], acc);
  return acc;
}

// Resamples along one axis: rows x cols -> rows x out (horizontal) or out x cols
// (vertical), summing each output's taps as PyTorch's kernel (sum_taps).
std::vector<float> resample_axis(const std::vector<float>& src, int rows, int cols, int out,
                                 bool horizontal) {
  const AxisTaps t = aa_taps(horizontal ? cols : rows, out);
  const int out_rows = horizontal ? rows : out, out_cols = horizontal ? out : cols;
  std::vector<float> dst(static_cast<std::size_t>(out_rows) * out_cols);
  for (int r = 0; r < out_rows; ++r) {
    for (int c = 0; c < out_cols; ++c) {
      const int i = horizontal ? c : r;
      const float* w = &t.w[static_cast<std::size_t>(i) * t.stride];
      const int f = t.first[i];
      auto at = [&](int j) {
        return horizontal ? src[static_cast<std::size_t>(r) * cols + f + j]
                          : src[static_cast<std::size_t>(f + j) * cols + c];
      };
      dst[static_cast<std::size_t>(r) * out_cols + c] = sum_taps(at, w, t.count[i]);
    }
  }
  return dst;
}

}  // namespace

// torch itself is wrong for one-pixel-wide outputs whose height changes (its vertical
// pass then uses the first output row's taps for every row, so all rows repeat row 0);
// this computes them as torch does at every other width.
std::vector<float> resize_bilinear_aa(const float* src, int src_h, int src_w, int dst_h, int dst_w) {
  require(src != nullptr && src_h > 0 && src_w > 0 && dst_h > 0 && dst_w > 0,
          "resize_bilinear_aa: empty input or output");
  std::vector<float> x(src, src + static_cast<std::size_t>(src_h) * src_w);
  if (dst_w != src_w) x = resample_axis(x, src_h, src_w, dst_w, true);
  if (dst_h != src_h) x = resample_axis(x, src_h, dst_w, dst_h, false);
  return x;
}

std::vector<int32_t> component_areas(const uint8_t* mask, int h, int w) {
  require(mask != nullptr && h > 0 && w > 0, "component_areas: empty mask");
  const std::size_t n = static_cast<std::size_t>(h) * w;
  std::vector<int32_t> area(n, 0);
  std::vector<uint8_t> seen(n, 0);
  std::vector<std::size_t> component, stack;
  for (std::size_t start = 0; start < n; ++start) {
    if (seen[start] || !mask[start]) continue;
    component.clear();
    stack.assign(1, start);
    seen[start] = 1;
    while (!stack.empty()) {
      const std::size_t p = stack.back();
      stack.pop_back();
      component.push_back(p);
      const int y = static_cast<int>(p / w), x = static_cast<int>(p % w);
      for (int dy = -1; dy <= 1; ++dy) {
        for (int dx = -1; dx <= 1; ++dx) {
          const int ny = y + dy, nx = x + dx;
          if (ny < 0 || ny >= h || nx < 0 || nx >= w) continue;
          const std::size_t q = static_cast<std::size_t>(ny) * w + nx;
          if (!seen[q] && mask[q]) {
            seen[q] = 1;
            stack.push_back(q);
          }
        }
      }
    }
    for (std::size_t p : component) area[p] = static_cast<int32_t>(component.size());
  }
  return area;
}

void fill_holes_in_mask_scores(float* logits, int h, int w, int max_area) {
  require(logits != nullptr && h > 0 && w > 0, "fill_holes_in_mask_scores: empty mask");
  if (max_area <= 0) return;
  const std::size_t n = static_cast<std::size_t>(h) * w;
  std::vector<uint8_t> m(n);
  for (std::size_t i = 0; i < n; ++i) m[i] = logits[i] <= 0.0f;
  std::vector<int32_t> area = component_areas(m.data(), h, w);
  for (std::size_t i = 0; i < n; ++i)
    if (m[i] && area[i] <= max_area) logits[i] = 0.1f;
  int64_t fg = 0;
  for (std::size_t i = 0; i < n; ++i) fg += (m[i] = logits[i] > 0.0f);
  const int64_t thresh = std::min<int64_t>(fg / 2, max_area);
  area = component_areas(m.data(), h, w);
  for (std::size_t i = 0; i < n; ++i)
    if (m[i] && area[i] <= thresh) logits[i] = -0.1f;
}

void apply_non_overlapping_constraints(const std::vector<float*>& planes, std::size_t plane_size) {
  if (planes.size() <= 1) return;
  for (std::size_t p = 0; p < plane_size; ++p) {
    std::size_t best = 0;
    for (std::size_t k = 1; k < planes.size(); ++k)
      if (planes[k][p] > planes[best][p]) best = k;
    for (std::size_t k = 0; k < planes.size(); ++k)
      if (k != best) planes[k][p] = std::min(planes[k][p], -10.0f);
  }
}

void apply_object_wise_non_overlap(const std::vector<uint8_t*>& masks, const std::vector<float>& scores,
                                   std::size_t plane_size) {
  require(masks.size() == scores.size(), "apply_object_wise_non_overlap: one score per mask");
  if (masks.size() <= 1) return;
  for (std::size_t p = 0; p < plane_size; ++p) {
    // each object's value here: its score where its mask is set, else the background 0
    std::size_t best = 0;
    float best_v = masks[0][p] ? scores[0] : 0.0f;
    for (std::size_t k = 1; k < masks.size(); ++k) {
      const float v = masks[k][p] ? scores[k] : 0.0f;
      if (v > best_v) best = k, best_v = v;
    }
    for (std::size_t k = 0; k < masks.size(); ++k)
      if (k != best || !(best_v > 0.0f)) masks[k][p] = 0;
  }
}

float joint_score_logit(float class_logit, float presence_logit) {
  constexpr float eps = 1e-3f;
  const float x = std::min(std::max(sigmoid(class_logit) * sigmoid(presence_logit), 0.0f), 1.0f);
  const float logit = std::log(std::max(x, eps) / std::max(1.0f - x, eps));
  return std::min(std::max(logit, -10.0f), 10.0f);
}

std::vector<uint8_t> nms_masks(const std::vector<float>& probs, const float* masks, int h, int w,
                               float prob_threshold, float iou_threshold) {
  const std::size_t n = probs.size(), plane = static_cast<std::size_t>(h) * w;
  require(n == 0 || (masks != nullptr && h > 0 && w > 0), "nms_masks: empty masks");
  std::vector<uint8_t> keep(n, 0);
  std::vector<std::size_t> valid;
  for (std::size_t i = 0; i < n; ++i)
    if (probs[i] > prob_threshold) valid.push_back(i);
  // masks > 0 as bits, and their areas, for the pairwise IoUs
  std::vector<std::vector<uint8_t>> bin(valid.size());
  std::vector<int64_t> area(valid.size(), 0);
  for (std::size_t k = 0; k < valid.size(); ++k) {
    const float* m = masks + valid[k] * plane;
    bin[k].resize(plane);
    for (std::size_t p = 0; p < plane; ++p) area[k] += (bin[k][p] = m[p] > 0.0f);
  }
  auto iou = [&](std::size_t a, std::size_t b) {
    int64_t inter = 0;
    for (std::size_t p = 0; p < plane; ++p) inter += bin[a][p] & bin[b][p];
    const float uni = static_cast<float>(std::max<int64_t>(area[a] + area[b] - inter, 1));
    return static_cast<float>(inter) / uni;
  };
  std::vector<std::size_t> order(valid.size());
  for (std::size_t k = 0; k < order.size(); ++k) order[k] = order.size() - 1 - k;
  std::stable_sort(order.begin(), order.end(),
                   [&](std::size_t a, std::size_t b) { return probs[valid[a]] > probs[valid[b]]; });
  std::vector<uint8_t> dropped(valid.size(), 0);
  for (std::size_t i = 0; i < order.size(); ++i) {
    const std::size_t a = order[i];
    if (dropped[a]) continue;
    keep[valid[a]] = 1;
    for (std::size_t j = i + 1; j < order.size(); ++j)
      if (!dropped[order[j]] && iou(a, order[j]) > iou_threshold) dropped[order[j]] = 1;
  }
  return keep;
}

uint16_t float_to_bf16(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  if (std::isnan(x)) return 0x7FC0;
  const uint32_t bias = ((u >> 16) & 1u) + 0x7FFFu;
  return static_cast<uint16_t>((u + bias) >> 16);
}

float bf16_to_float(uint16_t b) {
  const uint32_t u = static_cast<uint32_t>(b) << 16;
  float x;
  std::memcpy(&x, &u, 4);
  return x;
}

}  // namespace sam3
