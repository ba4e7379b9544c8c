#include "video/memory_bank.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <set>

#include "sam3/error.h"
#include "sam3/postprocess.h"

namespace sam3 {
namespace video {
namespace {

int floor_div(int a, int b) { return a / b - ((a % b != 0) && ((a < 0) != (b < 0)) ? 1 : 0); }

}  // namespace

std::size_t ObjFrame::bytes() const {
  return pred_masks.size() * sizeof(float) + video_res_mask.size() + maskmem.size() * sizeof(uint16_t) +
         obj_ptr.size() * sizeof(float) + sizeof(ObjFrame);
}

float mem_score(const std::vector<ObjFramePtr>& objs, bool elementwise) {
  const std::size_t b = objs.size();
  if (b == 0) return 0.f;
  std::vector<float> norm(b), iou(b);
  for (std::size_t i = 0; i < b; ++i) {
    const float s = objs[i]->object_score;
    norm[i] = s > 0.f ? sigmoid(s) * 2.f - 1.f : 0.f;
    iou[i] = objs[i]->iou_score;
  }
  double sum = 0;
  if (elementwise || b == 1) {
    for (std::size_t i = 0; i < b; ++i) sum += static_cast<double>(norm[i] * iou[i]);
    return static_cast<float>(sum / b);
  }
  for (std::size_t i = 0; i < b; ++i)
    for (std::size_t j = 0; j < b; ++j) sum += static_cast<double>(norm[i] * iou[j]);
  return static_cast<float>(sum / (b * b));
}

std::vector<int> select_closest_cond_frames(int frame, const std::vector<int>& cond_frames, int max,
                                            bool keep_first) {
  if (max == -1 || static_cast<int>(cond_frames.size()) <= max) return cond_frames;
  std::vector<int> selected;
  auto add = [&](int t) {
    if (std::find(selected.begin(), selected.end(), t) == selected.end()) selected.push_back(t);
  };
  const int kNone = -1;
  if (keep_first) {
    int first = kNone;
    for (int t : cond_frames)
      if (t < frame && (first == kNone || t < first)) first = t;
    if (first == kNone)  // tracking in reverse: the latest one after the frame
      for (int t : cond_frames)
        if (t > frame && (first == kNone || t > first)) first = t;
    if (first != kNone) add(first);
  }
  int before = kNone, after = kNone;
  for (int t : cond_frames) {
    if (t < frame && (before == kNone || t > before)) before = t;
    if (t >= frame && (after == kNone || t < after)) after = t;
  }
  if (before != kNone) add(before);
  if (after != kNone) add(after);
  std::vector<int> rest;
  for (int t : cond_frames)
    if (std::find(selected.begin(), selected.end(), t) == selected.end()) rest.push_back(t);
  // a stable sort by distance; ties keep the ascending order of the frames
  std::stable_sort(rest.begin(), rest.end(),
                   [&](int a, int b) { return std::abs(a - frame) < std::abs(b - frame); });
  // the official `[:num_remain]`: with keep_first and max 2 num_remain can be negative,
  // and a negative slice keeps all but the last |num_remain| frames
  const int num_remain = max - static_cast<int>(selected.size());
  const int n = static_cast<int>(rest.size());
  const int take = num_remain >= 0 ? std::min(num_remain, n) : std::max(0, n + num_remain);
  selected.insert(selected.end(), rest.begin(), rest.begin() + take);
  return selected;
}

std::vector<int> frame_filter(const OutputDict& out, bool reverse, int frame, int num_frames,
                              const TrackerConfig& cfg) {
  if ((frame == 0 && !reverse) || (frame == num_frames - 1 && reverse)) return {};
  const int max_num = std::min(num_frames, cfg.max_obj_ptrs_in_encoder);
  const int r = cfg.memory_temporal_stride_for_eval;
  std::vector<int> valid;  // nearest last, as the official list after its insert(0, i)
  const int must_include = reverse ? frame + 1 : frame - 1;
  // forward scans frame-1 down to 1 (range(frame - 1, 0, -r): frame 0 is never scanned);
  // reverse scans frame+1 up to the last frame
  for (int i = must_include; reverse ? i < num_frames : i > 0; i += reverse ? r : -r) {
    auto it = out.non_cond.find(i);
    if (it == out.non_cond.end() || !it->second->has_eff) continue;
    if (it->second->eff > cfg.mf_threshold) valid.insert(valid.begin(), i);
    if (static_cast<int>(valid.size()) >= max_num - 1) break;
  }
  if (std::find(valid.begin(), valid.end(), must_include) == valid.end()) valid.push_back(must_include);
  return valid;
}

MemoryPlan plan_memory(const OutputDict& out, int frame, bool reverse, int num_frames,
                       const TrackerConfig& cfg) {
  if (out.cond.empty()) throw Error("tracking needs at least one prompted frame");
  std::vector<int> cond_frames;
  for (const auto& kv : out.cond) cond_frames.push_back(kv.first);
  const std::vector<int> selected =
      select_closest_cond_frames(frame, cond_frames, cfg.max_cond_frames_in_attn, cfg.keep_first_cond_frame);
  const std::set<int> sel(selected.begin(), selected.end());
  auto unselected_cond = [&](int t) { return out.cond.count(t) && !sel.count(t); };
  // a non-conditioning output, or an unselected conditioning one, on frame t
  auto usable = [&](int t, bool& is_cond) {
    if (out.non_cond.count(t)) return is_cond = false, true;
    if (unselected_cond(t)) return is_cond = true, true;
    return false;
  };
  const int n = cfg.num_maskmem, r = cfg.memory_temporal_stride_for_eval;
  MemoryPlan plan;
  for (int t : selected) plan.memories.push_back({t, true, n - 1});  // t_pos 0
  std::vector<int> valid;
  if (cfg.use_memory_selection) valid = frame_filter(out, reverse, frame, num_frames, cfg);
  for (int t_pos = 1; t_pos < n; ++t_pos) {
    const int t_rel = n - t_pos;  // frames before the current one
    int prev;
    if (cfg.use_memory_selection) {
      if (t_rel > static_cast<int>(valid.size())) continue;
      prev = valid[valid.size() - t_rel];
    } else if (t_rel == 1) {
      prev = reverse ? frame + 1 : frame - 1;
    } else if (!reverse) {  // the nearest of every r-th frame before, then further back
      prev = floor_div(frame - 2, r) * r - (t_rel - 2) * r;
    } else {
      prev = -floor_div(-(frame + 2), r) * r + (t_rel - 2) * r;
    }
    bool is_cond = false;
    if (usable(prev, is_cond)) plan.memories.push_back({prev, is_cond, n - t_pos - 1});
  }
  const int max_ptrs = std::min(num_frames, cfg.max_obj_ptrs_in_encoder);
  const float denom = static_cast<float>(max_ptrs - 1);
  const int sign = reverse ? -1 : 1;
  for (int t : selected)  // conditioning pointers only from the past (in tracking order)
    if (reverse ? t >= frame : t <= frame)
      plan.pointers.push_back({t, true, static_cast<float>((frame - t) * sign) / denom});
  for (int t_diff = 1; t_diff < max_ptrs; ++t_diff) {
    int t;
    if (cfg.use_memory_selection) {
      if (t_diff >= static_cast<int>(valid.size())) break;
      t = valid[valid.size() - t_diff];
    } else {
      t = reverse ? frame + t_diff : frame - t_diff;
      if (t < 0 || t >= num_frames) break;
    }
    bool is_cond = false;
    if (usable(t, is_cond)) plan.pointers.push_back({t, is_cond, static_cast<float>(t_diff) / denom});
  }
  return plan;
}

}  // namespace video
}  // namespace sam3
