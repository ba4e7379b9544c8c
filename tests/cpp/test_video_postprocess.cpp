// The video tracker's host functions against the official Python code (goldens from
// data/gen_video_postprocess_cases.py): sam3/video_postprocess.h and the memory
// selection of runtime/src/video/memory_bank.h (compiled into this test).
//
// Every comparison is exact (float bit patterns, masks, frame lists) except
// resize_bilinear_aa, whose differences are counted, printed and bounded by
// kResizeTol * max(1, |want|); when the goldens come from torch's AVX2/AVX512 kernels
// ("torch_kernel": "fma", the ones resize_bilinear_aa follows), they must also be
// bit-identical. bf16 NaNs are only required to stay NaN (torch's own bit pattern for a
// NaN depends on the CPU build and the tensor's shape: 0xFFFF or 0x7FC0).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "golden.h"
#include "sam3/error.h"
#include "sam3/manifest.h"
#include "sam3/video_postprocess.h"
#include "video/concept_planner.h"
#include "video/memory_bank.h"

namespace {

using nlohmann::json;

const json& cases() {
  static const json all = golden::load("video_postprocess_cases.json", "gen_video_postprocess_cases.py");
  return all;
}

using golden::floats;

std::vector<uint8_t> bits(const std::string& s) {
  std::vector<uint8_t> v(s.size());
  for (size_t i = 0; i < s.size(); ++i) v[i] = s[i] == '1';
  return v;
}

uint32_t bits_of(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  return u;
}

float from_bits(uint32_t u) {
  float x;
  std::memcpy(&x, &u, 4);
  return x;
}

// The generator's hash_map: same integer hash and the same double ops, so bit-identical.
using golden::hash_map;

// The generator's make_input.
std::vector<float> make_input(const json& spec, int h, int w) {
  const std::string kind = spec["kind"];
  const size_t n = static_cast<size_t>(h) * w;
  if (kind == "hash") return hash_map(n, spec["seed"]);
  if (kind == "binary") {
    std::vector<float> v = hash_map(n, spec["seed"]);
    for (float& x : v) x = x > 0.f ? 1.f : 0.f;
    return v;
  }
  EXPECT_EQ(kind, "disks");
  const float inside = spec["inside"].get<float>(), outside = spec["outside"].get<float>();
  std::vector<float> v(n, outside);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      for (const auto& d : spec["disks"]) {
        const int64_t dy = y - d[0].get<int64_t>(), dx = x - d[1].get<int64_t>(), r = d[2].get<int64_t>();
        if (dy * dy + dx * dx <= r * r) v[static_cast<size_t>(y) * w + x] = inside;
      }
  return v;
}

bool fma_goldens() { return cases()["meta"][0]["torch_kernel"] == "fma"; }

constexpr double kResizeTol = 1e-5;

struct Diffs {
  size_t values = 0, not_identical = 0;
  double max_abs = 0;
  void add(float got, float want) {
    ++values;
    const double g = got, w = want;
    EXPECT_LE(std::fabs(g - w), kResizeTol * std::max(1.0, std::fabs(w))) << got << " vs " << want;
    if (bits_of(got) == bits_of(want)) return;
    ++not_identical;
    max_abs = std::max(max_abs, std::fabs(static_cast<double>(got) - want));
  }
};

}  // namespace

// ---------------------------------------------------------------- resize_bilinear_aa

TEST(ResizeBilinearAA, MatchesTorchInterpolateAntialias) {
  Diffs all;
  size_t large = 0, sums_identical = 0;
  for (const auto& c : cases()["resize"]) {
    const int sh = c["src_h"], sw = c["src_w"], dh = c["dst_h"], dw = c["dst_w"];
    const std::string name = std::to_string(sh) + "x" + std::to_string(sw) + " -> " + std::to_string(dh) + "x" +
                             std::to_string(dw) + " " + c["input"]["kind"].get<std::string>();
    SCOPED_TRACE(name);
    const std::vector<float> src = make_input(c["input"], sh, sw);
    const std::vector<float> out = sam3::resize_bilinear_aa(src.data(), sh, sw, dh, dw);
    ASSERT_EQ(out.size(), static_cast<size_t>(dh) * dw);
    Diffs d;
    if (c.contains("output")) {
      const std::vector<float> want = floats(c["output"]);
      for (size_t i = 0; i < want.size(); ++i) d.add(out[i], want[i]);
    } else {
      const std::vector<float> want = floats(c["sample_value"]);
      for (size_t k = 0; k < want.size(); ++k) d.add(out[c["sample_index"][k].get<size_t>()], want[k]);
      // left-to-right double sums over every value, as the generator computes them
      double sum = 0, sum_sq = 0, bound = 0;
      for (float v : out) {
        sum += v;
        sum_sq += static_cast<double>(v) * v;
        bound += kResizeTol * std::max(1.0, std::fabs(static_cast<double>(v)));
      }
      const double want_sum = c["sum"], want_sq = c["sum_sq"];
      EXPECT_NEAR(sum, want_sum, bound);
      EXPECT_NEAR(sum_sq, want_sq, 20 * bound);  // |v| <= 10
      ++large;
      const bool same = sum == want_sum && sum_sq == want_sq;
      sums_identical += same;
      if (fma_goldens()) EXPECT_TRUE(same) << "sums over every value differ: not bit-identical";
    }
    if (fma_goldens()) EXPECT_EQ(d.not_identical, 0u) << "values not bit-identical, max abs diff " << d.max_abs;
    if (d.not_identical)
      std::printf("[resize_bilinear_aa] %s: %zu of %zu values not bit-identical, max abs diff %.3g\n",
                  name.c_str(), d.not_identical, d.values, d.max_abs);
    all.values += d.values;
    all.not_identical += d.not_identical;
    all.max_abs = std::max(all.max_abs, d.max_abs);
  }
  std::printf("[resize_bilinear_aa] goldens from torch's %s kernel: %zu values compared, %zu not "
              "bit-identical, max abs diff %.3g; full-output double sums identical in %zu of %zu large cases\n",
              cases()["meta"][0]["torch_kernel"].get<std::string>().c_str(), all.values, all.not_identical,
              all.max_abs, sums_identical, large);
}

TEST(ResizeBilinearAA, SameSizeIsACopy) {
  const std::vector<float> x = {1.5f, -2.25f, 3e-8f, -0.0f, 7.0f, 1e30f};
  const std::vector<float> y = sam3::resize_bilinear_aa(x.data(), 2, 3, 2, 3);
  ASSERT_EQ(y.size(), x.size());
  for (size_t i = 0; i < x.size(); ++i) EXPECT_EQ(bits_of(y[i]), bits_of(x[i])) << i;
}

TEST(ResizeBilinearAA, RejectsInvalidArguments) {
  const std::vector<float> x(4, 1.0f);
  EXPECT_THROW(sam3::resize_bilinear_aa(x.data(), 0, 2, 4, 4), sam3::Error);
  EXPECT_THROW(sam3::resize_bilinear_aa(x.data(), 2, -2, 4, 4), sam3::Error);
  EXPECT_THROW(sam3::resize_bilinear_aa(x.data(), 2, 2, 0, 4), sam3::Error);
  EXPECT_THROW(sam3::resize_bilinear_aa(x.data(), 2, 2, 4, -1), sam3::Error);
  EXPECT_THROW(sam3::resize_bilinear_aa(nullptr, 2, 2, 4, 4), sam3::Error);
}

// ---------------------------------------------------------------- masks

TEST(ComponentAreas, MatchesOfficialConnectedComponents) {
  for (const auto& c : cases()["components"]) {
    const int h = c["h"], w = c["w"];
    SCOPED_TRACE(std::to_string(h) + "x" + std::to_string(w));
    const std::vector<uint8_t> mask = bits(c["mask"]);
    EXPECT_EQ(sam3::component_areas(mask.data(), h, w), c["areas"].get<std::vector<int32_t>>());
  }
}

TEST(FillHolesInMaskScores, MatchesOfficial) {
  size_t pos = 0, neg = 0;
  for (const auto& c : cases()["fill_holes"]) {
    const int h = c["h"], w = c["w"], max_area = c["max_area"];
    SCOPED_TRACE(c["note"].get<std::string>() + ": " + std::to_string(h) + "x" + std::to_string(w) +
                 " max_area=" + std::to_string(max_area));
    std::vector<float> in;
    if (c.contains("logits")) {
      in = floats(c["logits"]);
    } else {
      in = hash_map(static_cast<size_t>(h) * w, c["hash"]["seed"]);
      const float bias = c["hash"]["bias"].get<float>();
      for (float& v : in) v += bias;  // float32 addition, as numpy's
    }
    std::vector<float> want = in;
    for (const auto& i : c["to_pos"]) want[i.get<size_t>()] = 0.1f;
    for (const auto& i : c["to_neg"]) want[i.get<size_t>()] = -0.1f;
    pos += c["to_pos"].size();
    neg += c["to_neg"].size();
    std::vector<float> got = in;
    sam3::fill_holes_in_mask_scores(got.data(), h, w, max_area);
    size_t wrong = 0;
    for (size_t i = 0; i < want.size(); ++i)
      if (bits_of(got[i]) != bits_of(want[i]) && wrong++ < 5)
        ADD_FAILURE() << "pixel " << i << " (y " << i / w << ", x " << i % w << "): " << got[i] << " vs "
                      << want[i] << " (input " << in[i] << ")";
    EXPECT_EQ(wrong, 0u);
  }
  std::printf("[fill_holes_in_mask_scores] %zu pixels filled (0.1), %zu removed (-0.1)\n", pos, neg);
  EXPECT_GT(pos, 0u);
  EXPECT_GT(neg, 0u);
}

TEST(FillHolesInMaskScores, RejectsInvalidArguments) {
  std::vector<float> x(4, 1.0f);
  EXPECT_THROW(sam3::fill_holes_in_mask_scores(nullptr, 2, 2, 16), sam3::Error);
  EXPECT_THROW(sam3::fill_holes_in_mask_scores(x.data(), 0, 2, 16), sam3::Error);
  EXPECT_THROW(sam3::component_areas(nullptr, 2, 2), sam3::Error);
}

TEST(ApplyNonOverlappingConstraints, MatchesOfficial) {
  for (const auto& c : cases()["non_overlap"]) {
    const int n = c["n"], h = c["h"], w = c["w"];
    SCOPED_TRACE("N=" + std::to_string(n) + " " + std::to_string(h) + "x" + std::to_string(w));
    std::vector<float> x = floats(c["logits"]);
    const std::vector<float> want = floats(c["output"]);
    const size_t plane = static_cast<size_t>(h) * w;
    std::vector<float*> planes;
    for (int k = 0; k < n; ++k) planes.push_back(x.data() + plane * k);
    sam3::apply_non_overlapping_constraints(planes, plane);
    for (size_t i = 0; i < want.size(); ++i)
      EXPECT_EQ(bits_of(x[i]), bits_of(want[i])) << "object " << i / plane << " pixel " << i % plane;
  }
}

TEST(ApplyObjectWiseNonOverlap, MatchesOfficial) {
  for (const auto& c : cases()["object_wise"]) {
    const int n = c["n"], h = c["h"], w = c["w"];
    SCOPED_TRACE("N=" + std::to_string(n) + " " + std::to_string(h) + "x" + std::to_string(w));
    std::vector<uint8_t> m = bits(c["masks"]);
    const std::vector<uint8_t> want = bits(c["output"]);
    const std::vector<float> scores = floats(c["scores"]);
    const size_t plane = static_cast<size_t>(h) * w;
    std::vector<uint8_t*> masks;
    for (int k = 0; k < n; ++k) masks.push_back(m.data() + plane * k);
    sam3::apply_object_wise_non_overlap(masks, scores, plane);
    EXPECT_EQ(m, want);
  }
}

TEST(ApplyObjectWiseNonOverlap, RejectsMismatchedScores) {
  std::vector<uint8_t> a(4, 1), b(4, 1);
  EXPECT_THROW(sam3::apply_object_wise_non_overlap({a.data(), b.data()}, {0.5f}, 4), sam3::Error);
}

// ---------------------------------------------------------------- bf16

TEST(BFloat16, FloatToBf16MatchesTorch) {
  const json& c = cases()["bf16"][0];
  const auto& in = c["float_bits"];
  const auto& want = c["bf16"];
  ASSERT_EQ(in.size(), want.size());
  size_t nans = 0;
  for (size_t i = 0; i < in.size(); ++i) {
    const uint32_t u = in[i];
    const uint16_t got = sam3::float_to_bf16(from_bits(u));
    char hex[16];
    std::snprintf(hex, sizeof hex, "0x%08X", u);
    if (want[i].is_null()) {  // NaN in: a NaN out
      EXPECT_EQ(got & 0x7F80, 0x7F80) << hex;
      EXPECT_NE(got & 0x7F, 0) << hex;
      ++nans;
    } else {
      EXPECT_EQ(got, want[i].get<uint16_t>()) << hex;
    }
  }
  EXPECT_GT(nans, 0u);
}

TEST(BFloat16, Bf16ToFloatIsAShift) {
  const json& c = cases()["bf16"][0];
  std::map<uint32_t, uint32_t> exceptions;  // torch's .float() where it is not b << 16 (none seen)
  for (const auto& e : c["bf16_to_float_exceptions"]) exceptions[e[0]] = e[1];
  for (uint32_t b = 0; b < 65536; ++b) {
    const auto it = exceptions.find(b);
    const uint32_t want = it == exceptions.end() ? b << 16 : it->second;
    EXPECT_EQ(bits_of(sam3::bf16_to_float(static_cast<uint16_t>(b))), want) << b;
  }
}

// ---------------------------------------------------------------- memory selection

namespace {

void check_selection(const json& c) {
  const int frame = c["frame"], max = c["max"];
  const bool keep_first = c["keep_first"];
  const std::vector<int> cond = c["cond"].get<std::vector<int>>();
  SCOPED_TRACE("frame " + std::to_string(frame) + " cond " + c["cond"].dump() + " max " + std::to_string(max) +
               (keep_first ? " keep_first" : ""));
  const std::vector<int> got = sam3::video::select_closest_cond_frames(frame, cond, max, keep_first);
  EXPECT_EQ(got, c["selected"].get<std::vector<int>>());  // the official dict's order
  const std::set<int> sel(got.begin(), got.end());
  std::vector<int> unselected;  // plan_memory's view: the rest, in cond order
  for (int t : cond)
    if (!sel.count(t)) unselected.push_back(t);
  EXPECT_EQ(unselected, c["unselected"].get<std::vector<int>>());
}

}  // namespace

TEST(SelectClosestCondFrames, MatchesOfficial) {
  size_t n = 0;
  for (const auto& c : cases()["select_cond"])
    if (!c["negative_remain"].get<bool>()) check_selection(c), ++n;
  EXPECT_GT(n, 200u);
}

// keep_first_cond_frame with max_cond_frames_in_attn == 2, where the first, the previous
// and the next conditioning frames are three different frames: the official
// `sorted(...)[:num_remain]` gets num_remain == -1 and so adds every remaining frame
// but the farthest; memory_bank.cpp follows the slice (the default config, max 4 and
// keep_first off, never gets there).
TEST(SelectClosestCondFrames, NegativeRemainMatchesOfficial) {
  for (const auto& c : cases()["select_cond"])
    if (c["negative_remain"].get<bool>()) check_selection(c);
}

TEST(FrameFilter, MatchesOfficial) {
  size_t nonempty = 0;
  for (const auto& c : cases()["frame_filter"]) {
    const int num_frames = c["num_frames"], frame = c["frame"], r = c["r"];
    const bool reverse = c["reverse"];
    SCOPED_TRACE("num_frames " + std::to_string(num_frames) + " frame " + std::to_string(frame) +
                 (reverse ? " reverse" : " forward") + " r " + std::to_string(r) + " max_obj_ptrs " +
                 c["max_obj_ptrs"].dump() + " threshold " + c["threshold"].dump() + " entries " +
                 c["entries"].dump());
    sam3::TrackerConfig cfg;
    cfg.max_obj_ptrs_in_encoder = c["max_obj_ptrs"];
    cfg.mf_threshold = c["threshold"].get<float>();
    cfg.memory_temporal_stride_for_eval = r;
    sam3::video::OutputDict out;
    for (const auto& e : c["entries"]) {
      auto f = std::make_shared<sam3::video::FrameOut>();
      f->has_eff = !e[1].is_null();
      if (f->has_eff) f->eff = e[1].get<float>();
      out.non_cond[e[0].get<int>()] = f;
    }
    const std::vector<int> got = sam3::video::frame_filter(out, reverse, frame, num_frames, cfg);
    EXPECT_EQ(got, c["valid"].get<std::vector<int>>());
    nonempty += !got.empty();
  }
  EXPECT_GT(nonempty, 0u);
}

TEST(JointScore, MatchesOfficial) {
  const json& c = cases()["joint_score"][0];
  const std::vector<float> cls = floats(c["class_logits"]), pres = floats(c["presence_logits"]),
                           want = floats(c["output"]);
  size_t exact = 0;
  for (size_t i = 0; i < cls.size(); ++i) {
    const float got = sam3::joint_score_logit(cls[i], pres[i]);
    // torch's vectorised sigmoid and log differ from libm by an ulp or so
    EXPECT_NEAR(got, want[i], 2e-6f * std::max(1.0f, std::fabs(want[i]))) << cls[i] << " " << pres[i];
    exact += got == want[i];
  }
  EXPECT_GT(exact, cls.size() / 2);
}

TEST(NmsMasks, MatchesOfficial) {
  size_t kept = 0, dropped = 0;
  for (const auto& c : cases()["nms"]) {
    const std::vector<float> probs = floats(c["probs"]), masks = floats(c["masks"]);
    const std::vector<uint8_t> got = sam3::nms_masks(probs, masks.data(), c["h"], c["w"],
                                                     c["prob_threshold"].get<float>(),
                                                     c["iou_threshold"].get<float>());
    EXPECT_EQ(got, bits(c["keep"].get<std::string>())) << c["n"] << " detections";
    for (size_t i = 0; i < got.size(); ++i) (got[i] ? kept : dropped) += probs[i] > c["prob_threshold"].get<float>();
  }
  EXPECT_GT(kept, 0u);
  EXPECT_GT(dropped, 0u);  // some above the threshold were suppressed
}

// rectangles [y0, y1, x0, x1) as +2 logits on -2, as the generator draws them
std::vector<std::vector<float>> rect_planes(const json& rects, int h, int w) {
  std::vector<std::vector<float>> out;
  for (const auto& r : rects) {
    std::vector<float> m(static_cast<size_t>(h) * w, -2.0f);
    for (int y = r[0].get<int>(); y < std::min(r[1].get<int>(), h); ++y)
      for (int x = r[2].get<int>(); x < std::min(r[3].get<int>(), w); ++x) m[static_cast<size_t>(y) * w + x] = 2.0f;
    out.push_back(std::move(m));
  }
  return out;
}

TEST(ConceptPlanner, AssociationAndHotstartMatchOfficial) {
  size_t removed = 0, suppressed = 0, spawned = 0;
  for (const auto& c : cases()["planner"]) {
    const json& k = c["config"];
    sam3::video::PlannerConfig cfg;
    cfg.assoc_iou_thresh = k["assoc_iou_thresh"].get<float>();
    cfg.trk_assoc_iou_thresh = k["trk_assoc_iou_thresh"].get<float>();
    cfg.new_det_thresh = k["new_det_thresh"].get<float>();
    cfg.hotstart_delay = k["hotstart_delay"];
    cfg.hotstart_unmatch_thresh = k["hotstart_unmatch_thresh"];
    cfg.hotstart_dup_thresh = k["hotstart_dup_thresh"];
    cfg.init_trk_keep_alive = k["init_trk_keep_alive"];
    cfg.max_trk_keep_alive = k["max_trk_keep_alive"];
    cfg.min_trk_keep_alive = k["min_trk_keep_alive"];
    cfg.suppress_unmatched_only_within_hotstart = k["suppress_unmatched_only_within_hotstart"];
    cfg.decrease_trk_keep_alive_for_empty_masklets = k["decrease_trk_keep_alive_for_empty_masklets"];
    const bool reverse = c["reverse"];
    const int h = c["h"], w = c["w"];
    sam3::video::HotstartState state;
    int64_t next_id = 0;
    for (const auto& f : c["frames"]) {
      const int frame = f["frame"];
      SCOPED_TRACE("config " + k.dump() + (reverse ? " reverse" : " forward") + " frame " + std::to_string(frame));
      const auto dets = rect_planes(f["dets"], h, w), trks = rect_planes(f["trks"], h, w);
      std::vector<const float*> dp, tp;
      for (const auto& m : dets) dp.push_back(m.data());
      for (const auto& m : trks) tp.push_back(m.data());
      const auto a = sam3::video::associate_det_trk(dp, floats(f["scores"]), tp,
                                                    f["trk_ids"].get<std::vector<int64_t>>(),
                                                    static_cast<size_t>(h) * w, cfg);
      EXPECT_EQ(a.new_det, f["new_det"].get<std::vector<int>>());
      EXPECT_EQ(a.unmatched_trk, f["unmatched"].get<std::vector<int64_t>>());
      EXPECT_EQ(a.empty_trk, f["empty"].get<std::vector<int64_t>>());
      std::vector<std::vector<int64_t>> d2t;
      for (const auto& kv : a.det_to_matched_trk) d2t.push_back(kv.second);
      EXPECT_EQ(d2t, f["det_to_matched"].get<std::vector<std::vector<int64_t>>>());
      std::vector<std::vector<int64_t>> hi;
      for (const auto& kv : a.trk_to_high_conf_det) hi.push_back({kv.first, kv.second});
      EXPECT_EQ(hi, f["high_conf"].get<std::vector<std::vector<int64_t>>>());
      std::vector<int64_t> new_ids;
      for (size_t i = 0; i < a.new_det.size(); ++i) new_ids.push_back(next_id++);
      const auto gone = sam3::video::process_hotstart(frame, reverse, a, new_ids, state, cfg);
      EXPECT_EQ(std::vector<int64_t>(gone.begin(), gone.end()), f["removed"].get<std::vector<int64_t>>());
      const auto& sup = state.suppressed_obj_ids[frame];
      EXPECT_EQ(std::vector<int64_t>(sup.begin(), sup.end()), f["suppressed"].get<std::vector<int64_t>>());
      removed += gone.size();
      suppressed += sup.size();
      spawned += new_ids.size();
    }
  }
  EXPECT_GT(removed, 0u);
  EXPECT_GT(suppressed, 0u);
  EXPECT_GT(spawned, 0u);
}

TEST(ConceptPlanner, RecentOcclusionSuppressionMatchesOfficial) {
  size_t suppressed = 0;
  for (const auto& c : cases()["occlusion"]) {
    const bool reverse = c["reverse"];
    std::map<int64_t, int64_t> last;
    for (const auto& f : c["frames"]) {
      SCOPED_TRACE(std::string(reverse ? "reverse" : "forward") + " threshold " + c["threshold"].dump() +
                   " frame " + f["frame"].dump());
      auto planes = rect_planes(f["rects"], 16, 16);
      std::vector<float*> ptrs;
      for (auto& p : planes) ptrs.push_back(p.data());
      const auto ids = f["ids"].get<std::vector<int64_t>>();
      const auto removed = f["newly_removed"].get<std::vector<int64_t>>();
      const auto flags = sam3::video::suppress_recent_occlusion(
          ptrs, 256, ids, f["frame"], reverse, c["threshold"].get<float>(),
          std::set<int64_t>(removed.begin(), removed.end()), last);
      std::vector<int64_t> got;
      for (size_t i = 0; i < ids.size(); ++i)
        if (flags[i]) got.push_back(ids[i]);
      EXPECT_EQ(got, f["suppressed"].get<std::vector<int64_t>>());
      std::vector<std::vector<int64_t>> meta;
      for (const auto& kv : last) meta.push_back({kv.first, kv.second});
      EXPECT_EQ(meta, f["last_occluded"].get<std::vector<std::vector<int64_t>>>());
      for (size_t i = 0; i < ids.size(); ++i)  // suppressed planes are -10 everywhere
        if (flags[i]) EXPECT_EQ(*std::max_element(planes[i].begin(), planes[i].end()), -10.0f);
      suppressed += got.size();
    }
  }
  EXPECT_GT(suppressed, 5u);
}

TEST(ConceptPlanner, AreaShrinkageSuppressionMatchesOfficial) {
  size_t suppressed = 0;
  for (const auto& c : cases()["shrink"]) {
    const int n = c["n"], h = c["h"], w = c["w"];
    std::vector<float> x = floats(c["logits"]);
    const std::vector<float> want = floats(c["output"]);
    std::vector<float*> planes;
    const size_t plane = static_cast<size_t>(h) * w;
    for (int k = 0; k < n; ++k) planes.push_back(x.data() + k * plane);
    const auto flags = sam3::video::suppress_area_shrinkage(planes, plane);
    EXPECT_EQ(x, want) << n << " masks " << h << "x" << w;
    for (auto f : flags) suppressed += f;
  }
  EXPECT_GT(suppressed, 0u);
}
