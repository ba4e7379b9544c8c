// The official SAM 3 resizes and normalisations: the image path's and the
// video path's.
//
// torchvision's v2.Resize on a uint8 image calls PyTorch's uint8 antialiased
// bilinear kernel (on AVX2 CPUs), which works in fixed point: double-precision
// triangle-filter weights are scaled to int16 with a per-axis precision, each
// output is round(sum(w * pixel)) by integer arithmetic, clamped to uint8, and
// the image is filtered horizontally first, then vertically (with a uint8
// intermediate). Every step below follows that arithmetic operation for
// operation, so the result is bit-exact; float weights would be off by one in
// places.
//
// The video loader resizes PIL images instead, with Pillow's BILINEAR filter.
// PyTorch's kernel is a port of Pillow's, so the two share everything here but
// the quantisation of the weights: Pillow always uses 22 fractional bits
// (PRECISION_BITS = 32 - 8 - 2, leaving room for 8 bits of pixel and 2 of
// overshoot) in int32, where PyTorch picks the most bits that fit int16.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "sam3/error.h"
#include "sam3/image.h"

namespace sam3 {
namespace {

// One axis of the separable filter: output i reads `count[i]` inputs starting
// at `first[i]`, with weights[i * taps + j].
struct AxisFilter {
  int taps = 0;
  int precision = 0;
  std::vector<int> first, count;
  std::vector<int32_t> weights;
};

double triangle(double x) {
  x = std::abs(x);
  return x < 1.0 ? 1.0 - x : 0.0;
}

// Pillow's fixed-point precision (libImaging/Resample.c, PRECISION_BITS).
constexpr int kPillowPrecision = 22;

// `fixed_precision` 0: PyTorch's int16 weights with the largest precision that
// fits; otherwise Pillow's int32 weights with that many fractional bits.
AxisFilter make_filter(int in_size, int out_size, int fixed_precision = 0) {
  const double scale = static_cast<double>(in_size) / out_size;
  // Downscaling widens the triangle to `scale` input pixels (the antialias).
  const double support = scale >= 1.0 ? scale : 1.0;
  const double invscale = scale >= 1.0 ? 1.0 / scale : 1.0;
  AxisFilter f;
  f.taps = static_cast<int>(std::ceil(support)) * 2 + 1;
  f.first.resize(out_size);
  f.count.resize(out_size);
  std::vector<double> w(static_cast<size_t>(out_size) * f.taps, 0.0);
  double w_max = 0.0;
  for (int i = 0; i < out_size; ++i) {
    const double center = scale * (i + 0.5);
    // Truncation (not floor) matches the reference's int64 casts.
    const int64_t lo = std::max(static_cast<int64_t>(center - support + 0.5), int64_t{0});
    const int64_t hi = std::min(static_cast<int64_t>(center + support + 0.5), int64_t{in_size});
    const int64_t n = std::clamp(hi - lo, int64_t{0}, int64_t{f.taps});
    double* wi = &w[static_cast<size_t>(i) * f.taps];
    double total = 0.0;
    for (int64_t j = 0; j < n; ++j) {
      wi[j] = triangle((static_cast<double>(j + lo) - center + 0.5) * invscale);
      total += wi[j];
    }
    if (total != 0.0) {
      for (int64_t j = 0; j < n; ++j) {
        wi[j] /= total;
        w_max = std::max(w_max, wi[j]);
      }
    }
    f.first[i] = static_cast<int>(lo);
    f.count[i] = static_cast<int>(n);
  }
  if (fixed_precision > 0) {
    f.precision = fixed_precision;
  } else {
    // The most fractional bits for which the largest weight still fits int16.
    for (f.precision = 0; f.precision < 22; ++f.precision) {
      if (static_cast<int>(0.5 + w_max * (1 << (f.precision + 1))) >= (1 << 15)) break;
    }
  }
  f.weights.resize(w.size());
  for (size_t k = 0; k < w.size(); ++k) {
    // Round half away from zero; PyTorch then truncates to int16 (a no-op for
    // the precision chosen above), Pillow keeps the int32.
    const double v = w[k] * (1 << f.precision);
    const int q = v < 0 ? static_cast<int>(-0.5 + v) : static_cast<int>(0.5 + v);
    f.weights[k] = fixed_precision > 0 ? q : static_cast<int16_t>(q);
  }
  return f;
}

// Adding half of the divisor before the arithmetic shift rounds to nearest;
// the clamp is PyTorch's saturating pack to uint8 and Pillow's clip8 table.
inline uint8_t finish(int32_t acc, int precision) {
  const int32_t v = acc >> precision;
  return static_cast<uint8_t>(v < 0 ? 0 : v > 255 ? 255 : v);
}

// Filters along x: src is h x in_w x 3, dst is h x out_w x 3.
void filter_rows(const uint8_t* src, int in_w, int h, const AxisFilter& f, int out_w,
                 uint8_t* dst) {
  const int32_t half = 1 << (f.precision - 1);
  for (int y = 0; y < h; ++y) {
    const uint8_t* row = src + static_cast<size_t>(y) * in_w * 3;
    uint8_t* out = dst + static_cast<size_t>(y) * out_w * 3;
    for (int x = 0; x < out_w; ++x) {
      const int32_t* w = &f.weights[static_cast<size_t>(x) * f.taps];
      const uint8_t* p = row + static_cast<size_t>(f.first[x]) * 3;
      int32_t r = half, g = half, b = half;
      for (int j = 0; j < f.count[x]; ++j, p += 3) {
        r += w[j] * p[0];
        g += w[j] * p[1];
        b += w[j] * p[2];
      }
      out[x * 3] = finish(r, f.precision);
      out[x * 3 + 1] = finish(g, f.precision);
      out[x * 3 + 2] = finish(b, f.precision);
    }
  }
}

// Filters along y: src is in_h x w x 3, dst is out_h x w x 3.
void filter_columns(const uint8_t* src, int w, const AxisFilter& f, int out_h, uint8_t* dst) {
  const size_t stride = static_cast<size_t>(w) * 3;
  const int32_t half = 1 << (f.precision - 1);
  std::vector<int32_t> acc(stride);
  for (int y = 0; y < out_h; ++y) {
    std::fill(acc.begin(), acc.end(), half);
    const int32_t* wy = &f.weights[static_cast<size_t>(y) * f.taps];
    for (int j = 0; j < f.count[y]; ++j) {
      const uint8_t* row = src + static_cast<size_t>(f.first[y] + j) * stride;
      for (size_t k = 0; k < stride; ++k) acc[k] += wy[j] * row[k];
    }
    uint8_t* out = dst + static_cast<size_t>(y) * stride;
    for (size_t k = 0; k < stride; ++k) out[k] = finish(acc[k], f.precision);
  }
}

// Both resizes: x pass then y pass, each skipped when that size is unchanged
// (both references skip it; the filter would be the identity anyway).
std::vector<uint8_t> resize_separable(const Image& img, int out_w, int out_h,
                                      int fixed_precision) {
  if (img.width <= 0 || img.height <= 0) throw Error("cannot resize an empty image");
  if (img.rgb.size() != static_cast<size_t>(img.width) * img.height * 3)
    throw Error("cannot resize: image buffer holds " + std::to_string(img.rgb.size()) +
                " bytes, expected " +
                std::to_string(static_cast<size_t>(img.width) * img.height * 3));
  if (out_w <= 0 || out_h <= 0)
    throw Error("cannot resize to " + std::to_string(out_w) + "x" + std::to_string(out_h));

  std::vector<uint8_t> cur = img.rgb;
  int w = img.width;
  if (out_w != img.width) {
    std::vector<uint8_t> next(static_cast<size_t>(img.height) * out_w * 3);
    filter_rows(cur.data(), w, img.height, make_filter(img.width, out_w, fixed_precision), out_w,
                next.data());
    cur.swap(next);
    w = out_w;
  }
  if (out_h != img.height) {
    // Pillow filters only the rows the y pass reads; the others are unused,
    // so filtering all of them gives the same result.
    std::vector<uint8_t> next(static_cast<size_t>(out_h) * w * 3);
    filter_columns(cur.data(), w, make_filter(img.height, out_h, fixed_precision), out_h,
                   next.data());
    cur.swap(next);
  }
  return cur;
}

// float32 -> IEEE half (round to nearest, ties to even) -> float32, by hand so
// that nothing depends on the compiler's _Float16 or the CPU's F16C.
float round_to_half(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  const uint32_t sign = u & 0x80000000u;
  const uint32_t mag = u & 0x7fffffffu;
  uint32_t h;  // the half's magnitude bits
  if (mag >= 0x7f800000u) {
    h = mag > 0x7f800000u ? 0x7e00u : 0x7c00u;  // NaN (quiet) / inf
  } else if (mag >= 0x477ff000u) {
    h = 0x7c00u;  // rounds to >= 65520: overflow to inf
  } else if (mag >= 0x38800000u) {
    // Normal half: rebias the exponent (127 -> 15) and drop 13 mantissa bits;
    // a carry out of the mantissa correctly bumps the exponent.
    const uint32_t drop = mag & 0x1fffu;
    h = (mag - 0x38000000u) >> 13;
    if (drop > 0x1000u || (drop == 0x1000u && (h & 1u))) ++h;
  } else if (mag >= 0x33000000u) {
    // Subnormal half (unit 2^-24): shift the full significand into place.
    const uint32_t e = mag >> 23;                         // 102..112
    const uint32_t sig = (mag & 0x7fffffu) | 0x800000u;   // value = sig * 2^(e-150)
    const uint32_t shift = 126 - e;                       // to units of 2^-24
    h = sig >> shift;
    const uint32_t rem = sig & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (h & 1u))) ++h;
  } else {
    h = 0;  // below half the smallest subnormal: +-0
  }
  // Back to float32 (exact).
  uint32_t out;
  const uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
  if (exp == 0x1f) {
    out = 0x7f800000u | (man << 13);
  } else if (exp != 0) {
    out = ((exp + 112u) << 23) | (man << 13);
  } else {
    const float v = static_cast<float>(man) * 5.9604644775390625e-8f;  // man * 2^-24
    std::memcpy(&out, &v, 4);
  }
  out |= sign;
  float r;
  std::memcpy(&r, &out, 4);
  return r;
}

// HWC uint8 -> NCHW float [3, size, size] through a 256-entry table.
std::vector<float> planes_from_table(const std::vector<uint8_t>& px, int size,
                                     const float (&table)[256]) {
  const size_t plane = static_cast<size_t>(size) * size;
  std::vector<float> out(plane * 3);
  for (size_t i = 0; i < plane; ++i)
    for (int c = 0; c < 3; ++c) out[c * plane + i] = table[px[i * 3 + c]];
  return out;
}

}  // namespace

std::vector<uint8_t> resize_bilinear_aa_u8(const Image& img, int out_w, int out_h) {
  return resize_separable(img, out_w, out_h, 0);
}

std::vector<uint8_t> resize_bilinear_pil(const Image& img, int out_w, int out_h) {
  return resize_separable(img, out_w, out_h, kPillowPrecision);
}

std::vector<float> preprocess(const Image& img, int size) {
  if (size <= 0) throw Error("preprocess: size must be positive, got " + std::to_string(size));
  const std::vector<uint8_t> px = resize_bilinear_aa_u8(img, size, size);
  // Same float32 operations as ToDtype(float32, scale=True) (x * float(1/255))
  // followed by Normalize(0.5, 0.5), so the table is bit-exact.
  float table[256];
  const float inv255 = static_cast<float>(1.0 / 255.0);
  for (int v = 0; v < 256; ++v) {
    const float x = static_cast<float>(v) * inv255;
    table[v] = (x - 0.5f) / 0.5f;
  }
  return planes_from_table(px, size, table);
}

std::vector<float> preprocess_video_frame(const Image& img, int size) {
  if (size <= 0)
    throw Error("preprocess_video_frame: size must be positive, got " + std::to_string(size));
  const std::vector<uint8_t> px = resize_bilinear_pil(img, size, size);
  // TF.to_tensor: float32 x / 255 (a true division, not a multiplication by
  // 1/255); stored into a float16 tensor; `images -= mean` and `images /= std`
  // in float16, which PyTorch's CPU kernels compute in float32 and round back
  // to half; the tracker's .float() is exact.
  float table[256];
  const float mean = 0.5f, std_dev = 0.5f;  // both exactly representable in half
  for (int v = 0; v < 256; ++v) {
    const float x = round_to_half(static_cast<float>(v) / 255.0f);
    table[v] = round_to_half(round_to_half(x - mean) / std_dev);
  }
  return planes_from_table(px, size, table);
}

}  // namespace sam3
