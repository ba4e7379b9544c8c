// Post-processing against the official Python code (goldens from
// data/gen_postprocess_cases.py).
//
// Tolerances: floats |got - want| <= 1e-6 * max(1, |want|) (the implementation aims at
// bit-identical results and the tests print how many values are not); mask ious and
// candidate logits are copies and must be identical; masks must be identical except at
// pixels whose upsampled logit is within 1e-6 of the threshold (counted and printed).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "golden.h"
#include "sam3/error.h"
#include "sam3/postprocess.h"
#include "sam3/rle.h"

namespace {

using nlohmann::json;

const json& cases() {
  static const json all = golden::load("postprocess_cases.json", "gen_postprocess_cases.py");
  return all;
}

using golden::floats;

// The generator's hash_map: same integer hash and the same double ops, so bit-identical.
using golden::hash_map;

constexpr double kTol = 1e-6;

bool close(double got, double want) { return std::fabs(got - want) <= kTol * std::max(1.0, std::fabs(want)); }

struct Diffs {
  size_t values = 0, not_identical = 0;
  double max_abs = 0, max_rel = 0;
  void add(float got, float want) {
    ++values;
    if (got == want) return;
    ++not_identical;
    const double d = std::fabs(static_cast<double>(got) - want);
    max_abs = std::max(max_abs, d);
    if (want != 0) max_rel = std::max(max_rel, d / std::fabs(want));
  }
  void print(const char* what) const {
    std::printf("[%s] %zu values, %zu not bit-identical, max abs diff %.3g, max rel diff %.3g\n", what,
                values, not_identical, max_abs, max_rel);
  }
};

// Compares a mask with a golden RLE; a differing pixel is tolerated only where the logit
// it came from is within 1e-6 of the threshold. Returns the tolerated count.
size_t compare_mask(const std::vector<uint8_t>& got, const std::string& want_rle, int h, int w,
                    const std::vector<float>& logits) {
  const std::vector<uint8_t> want = sam3::rle_decode(want_rle, h, w);
  EXPECT_EQ(got.size(), want.size());
  size_t near = 0;
  for (size_t i = 0; i < want.size() && i < got.size(); ++i) {
    if (got[i] == want[i]) continue;
    EXPECT_LE(std::fabs(logits[i]), kTol) << "pixel " << i << " differs away from the threshold";
    ++near;
  }
  return near;
}

}  // namespace

TEST(ResizeBilinear, MatchesTorchInterpolate) {
  Diffs diffs;
  size_t sums_identical = 0, large = 0;
  for (const auto& c : cases()["resize"]) {
    const int sh = c["src_h"], sw = c["src_w"], dh = c["dst_h"], dw = c["dst_w"];
    SCOPED_TRACE(std::to_string(sh) + "x" + std::to_string(sw) + " -> " + std::to_string(dh) + "x" +
                 std::to_string(dw));
    const std::vector<float> src = c.contains("input") ? floats(c["input"])
                                                       : hash_map(static_cast<size_t>(sh) * sw, c["input_hash"]);
    const std::vector<float> out = sam3::resize_bilinear(src.data(), sh, sw, dh, dw);
    ASSERT_EQ(out.size(), static_cast<size_t>(dh) * dw);
    if (c.contains("output")) {
      const std::vector<float> want = floats(c["output"]);
      for (size_t i = 0; i < want.size(); ++i) {
        EXPECT_TRUE(close(out[i], want[i])) << i << ": " << out[i] << " vs " << want[i];
        diffs.add(out[i], want[i]);
      }
      continue;
    }
    ++large;
    const std::vector<float> want = floats(c["sample_value"]);
    for (size_t k = 0; k < want.size(); ++k) {
      const size_t i = c["sample_index"][k];
      EXPECT_TRUE(close(out[i], want[k])) << i << ": " << out[i] << " vs " << want[k];
      diffs.add(out[i], want[k]);
    }
    // Left-to-right double sums over every value, as the generator computes them.
    double sum = 0, sum_sq = 0, bound = 0;
    for (float v : out) {
      sum += v;
      sum_sq += static_cast<double>(v) * v;
      bound += kTol * std::max(1.0, std::fabs(static_cast<double>(v)));
    }
    const double want_sum = c["sum"], want_sq = c["sum_sq"];
    EXPECT_NEAR(sum, want_sum, bound);
    EXPECT_NEAR(sum_sq, want_sq, 2 * bound * 10);  // |v| <= 10 for hash inputs
    sums_identical += (sum == want_sum && sum_sq == want_sq);
  }
  diffs.print("resize_bilinear");
  std::printf("[resize_bilinear] full-output double sums identical in %zu of %zu large cases\n",
              sums_identical, large);
}

TEST(ResizeBilinear, SameSizeIsACopy) {
  const std::vector<float> x = {1.5f, -2.25f, 3e-8f, -0.0f, 7.0f, 1e30f};
  EXPECT_EQ(sam3::resize_bilinear(x.data(), 2, 3, 2, 3), x);
}

TEST(ResizeBilinear, RejectsInvalidArguments) {
  const std::vector<float> x(4, 1.0f);
  EXPECT_THROW(sam3::resize_bilinear(x.data(), 0, 2, 4, 4), sam3::Error);
  EXPECT_THROW(sam3::resize_bilinear(x.data(), 2, -2, 4, 4), sam3::Error);
  EXPECT_THROW(sam3::resize_bilinear(x.data(), 2, 2, 0, 4), sam3::Error);
  EXPECT_THROW(sam3::resize_bilinear(x.data(), 2, 2, 4, -1), sam3::Error);
  EXPECT_THROW(sam3::resize_bilinear(nullptr, 2, 2, 4, 4), sam3::Error);
}

TEST(SelectDetections, MatchesForwardGrounding) {
  Diffs scores, boxes;
  size_t near = 0, kept = 0, pixels = 0;
  for (const auto& c : cases()["detections"]) {
    const int q = c["num_queries"], m = c["mask_size"], h = c["img_h"], w = c["img_w"];
    SCOPED_TRACE("Q=" + std::to_string(q) + " M=" + std::to_string(m) + " " + std::to_string(h) + "x" +
                 std::to_string(w));
    const std::vector<float> logits = floats(c["logits"]), bx = floats(c["boxes"]), masks = floats(c["masks"]);
    const auto dets = sam3::select_detections(logits.data(), bx.data(), c["presence_logit"].get<float>(),
                                              masks.data(), q, m, h, w, c["threshold"].get<float>());
    const json& want = c["detections"];
    ASSERT_EQ(dets.size(), want.size());
    for (size_t k = 0; k < dets.size(); ++k) {
      const auto& d = dets[k];
      const json& e = want[k];
      EXPECT_EQ(d.query, e["query"].get<int>());
      EXPECT_TRUE(close(d.score, e["score"].get<float>())) << d.score;
      scores.add(d.score, e["score"].get<float>());
      for (int i = 0; i < 4; ++i) {
        EXPECT_TRUE(close(d.box_xyxy[i], e["box"][i].get<float>())) << i;
        boxes.add(d.box_xyxy[i], e["box"][i].get<float>());
      }
      const auto up = sam3::resize_bilinear(masks.data() + static_cast<size_t>(d.query) * m * m, m, m, h, w);
      near += compare_mask(d.mask, e["mask"], h, w, up);
      pixels += d.mask.size();
      ++kept;
    }
  }
  scores.print("select_detections scores");
  boxes.print("select_detections boxes");
  std::printf("[select_detections] %zu detections, %zu mask pixels, %zu differ (all near threshold)\n", kept,
              pixels, near);
}

TEST(SelectDetections, RejectsInvalidArguments) {
  const std::vector<float> l(2, 0.0f), b(8, 0.5f), m(2 * 4 * 4, 1.0f);
  EXPECT_THROW(sam3::select_detections(l.data(), b.data(), 0, m.data(), 0, 4, 8, 8, 0.5f), sam3::Error);
  EXPECT_THROW(sam3::select_detections(l.data(), b.data(), 0, m.data(), 2, 0, 8, 8, 0.5f), sam3::Error);
  EXPECT_THROW(sam3::select_detections(l.data(), b.data(), 0, m.data(), 2, 4, 0, 8, 0.5f), sam3::Error);
  EXPECT_THROW(sam3::select_detections(l.data(), b.data(), 0, m.data(), 2, 4, 8, -3, 0.5f), sam3::Error);
  EXPECT_THROW(sam3::select_detections(nullptr, b.data(), 0, m.data(), 2, 4, 8, 8, 0.5f), sam3::Error);
}

TEST(SelectMaskCandidates, MatchesMaskDecoderForward) {
  for (const auto& c : cases()["selection"]) {
    const int m = c["mask_size"];
    const bool multimask = c["multimask"], dynamic = c["dynamic"];
    SCOPED_TRACE("M=" + std::to_string(m) + (multimask ? " multimask" : " single") +
                 (dynamic ? " dynamic" : ""));
    const std::vector<float> masks = floats(c["masks"]), iou = floats(c["iou"]);
    const size_t plane = static_cast<size_t>(m) * m;
    EXPECT_EQ(sam3::stability_score(masks.data(), static_cast<int>(plane)), c["stability"].get<float>());
    const auto got = sam3::select_mask_candidates(masks.data(), iou.data(), m, multimask, dynamic);
    EXPECT_EQ(got.index, c["index"].get<std::vector<int>>());
    EXPECT_EQ(got.iou, floats(c["out_iou"]));
    ASSERT_EQ(got.logits.size(), got.index.size() * plane);
    for (int k = 0; k < got.count(); ++k) {
      const float* want = masks.data() + plane * got.index[k];
      EXPECT_TRUE(std::equal(want, want + plane, got.logits.begin() + plane * k)) << k;
    }
  }
}

TEST(SelectMaskCandidates, RejectsInvalidArguments) {
  const std::vector<float> m(4, 0.0f), iou(4, 0.0f);
  EXPECT_THROW(sam3::select_mask_candidates(m.data(), iou.data(), 0, true), sam3::Error);
  EXPECT_THROW(sam3::select_mask_candidates(nullptr, iou.data(), 1, true), sam3::Error);
  EXPECT_THROW(sam3::stability_score(m.data(), 0), sam3::Error);
}

TEST(FillHoles, MatchesPostprocessMasks) {
  size_t filled_total = 0;
  for (const auto& c : cases()["fill_holes"]) {
    const int h = c["h"], w = c["w"], max_area = c["max_area"];
    SCOPED_TRACE(std::to_string(h) + "x" + std::to_string(w) + " max_area=" + std::to_string(max_area));
    const std::vector<float> in = floats(c["logits"]);
    std::vector<float> out = in;
    const int n = sam3::fill_holes(out, h, w, max_area);
    const std::string filled = c["filled"];
    EXPECT_EQ(n, std::count(filled.begin(), filled.end(), '1'));
    for (size_t i = 0; i < in.size(); ++i) {
      if (filled[i] == '1')
        EXPECT_EQ(out[i], sam3::kHoleFillLogit) << i;
      else
        EXPECT_EQ(out[i], in[i]) << i;
    }
    filled_total += static_cast<size_t>(n);
  }
  EXPECT_GT(filled_total, 0u);
}

TEST(FillHoles, IsEightConnected) {
  // Two background pixels touching at a corner form one component of 2.
  std::vector<float> x = {-1, 1, 1, 1, -1, 1, 1, 1, 1};
  EXPECT_EQ(sam3::fill_holes(x, 3, 3, 1), 0);
  EXPECT_EQ(sam3::fill_holes(x, 3, 3, 2), 2);
}

TEST(FillHoles, RejectsInvalidArguments) {
  std::vector<float> x(6, -1.0f);
  EXPECT_THROW(sam3::fill_holes(x, 2, 4, 256), sam3::Error);
  EXPECT_THROW(sam3::fill_holes(x, 0, 6, 256), sam3::Error);
  EXPECT_THROW(sam3::fill_holes(x, 6, -1, 256), sam3::Error);
  EXPECT_EQ(sam3::fill_holes(x, 2, 3, 0), 0);  // disabled, as the official max_hole_area=0
}

TEST(BestInteractiveMask, MatchesPredictorAndCli) {
  size_t near = 0, pixels = 0;
  for (const auto& c : cases()["interactive"]) {
    const int m = c["mask_size"], h = c["img_h"], w = c["img_w"], max_area = c["max_hole_area"];
    const bool multimask = c["multimask"];
    SCOPED_TRACE(std::to_string(h) + "x" + std::to_string(w) + (multimask ? " multimask" : " single") +
                 " holes<=" + std::to_string(max_area));
    const std::vector<float> masks = floats(c["masks"]), iou = floats(c["iou"]);
    const auto r = sam3::best_interactive_mask(masks.data(), iou.data(), m, h, w, multimask, true, max_area);
    EXPECT_EQ(r.index, c["index"].get<int>());
    EXPECT_EQ(r.iou, c["out_iou"].get<float>());
    const size_t plane = static_cast<size_t>(m) * m;
    ASSERT_EQ(r.low_res_logits.size(), plane);
    for (size_t i = 0; i < plane; ++i)
      EXPECT_EQ(r.low_res_logits[i], std::clamp(masks[plane * r.index + i], -32.0f, 32.0f)) << i;
    std::vector<float> filled(masks.begin() + plane * r.index, masks.begin() + plane * (r.index + 1));
    sam3::fill_holes(filled, m, m, max_area);
    near += compare_mask(r.mask, c["mask"], h, w, sam3::resize_bilinear(filled.data(), m, m, h, w));
    pixels += r.mask.size();
  }
  std::printf("[best_interactive_mask] %zu mask pixels, %zu differ (all near threshold)\n", pixels, near);
}

TEST(BestInteractiveMask, RejectsInvalidArguments) {
  const std::vector<float> m(4 * 4, 1.0f), iou(4, 0.5f);
  EXPECT_THROW(sam3::best_interactive_mask(m.data(), iou.data(), 2, 0, 5, true), sam3::Error);
  EXPECT_THROW(sam3::best_interactive_mask(m.data(), iou.data(), 2, 5, 0, true), sam3::Error);
  EXPECT_THROW(sam3::best_interactive_mask(m.data(), iou.data(), -2, 5, 5, true), sam3::Error);
}
