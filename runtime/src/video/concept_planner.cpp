#include "video/concept_planner.h"

#include <algorithm>

namespace sam3 {
namespace video {
namespace {

constexpr float kHighConf = 0.8f, kHighIou = 0.8f;  // _associate_det_trk's constants

bool nonempty(const float* m, std::size_t plane) {
  for (std::size_t p = 0; p < plane; ++p)
    if (m[p] > 0.0f) return true;
  return false;
}

// an object first seen after hotstart_diff in tracking order: still in its hotstart
bool within_hotstart(const HotstartState& s, int64_t obj, int diff, bool reverse) {
  auto it = s.obj_first_frame_idx.find(obj);
  if (it == s.obj_first_frame_idx.end()) return false;  // not spawned by the detector
  return reverse ? it->second < diff : it->second > diff;
}

}  // namespace

float mask_iou(const float* a, const float* b, std::size_t plane) {
  int64_t inter = 0, uni = 0;
  for (std::size_t p = 0; p < plane; ++p) {
    const bool x = a[p] > 0.0f, y = b[p] > 0.0f;
    inter += x && y;
    uni += x || y;
  }
  return static_cast<float>(inter) / static_cast<float>(std::max<int64_t>(uni, 1));
}

Association associate_det_trk(const std::vector<const float*>& det_masks, const std::vector<float>& det_scores,
                              const std::vector<const float*>& trk_masks, const std::vector<int64_t>& trk_ids,
                              std::size_t plane, const PlannerConfig& cfg) {
  Association a;
  const std::size_t nd = det_masks.size(), nt = trk_masks.size();
  if (nt == 0) {  // every detection is new
    for (std::size_t d = 0; d < nd; ++d) a.new_det.push_back(static_cast<int>(d));
    return a;
  }
  std::vector<uint8_t> trk_nonempty(nt);
  for (std::size_t t = 0; t < nt; ++t) trk_nonempty[t] = nonempty(trk_masks[t], plane);
  if (nd == 0) {
    for (std::size_t t = 0; t < nt; ++t) (trk_nonempty[t] ? a.unmatched_trk : a.empty_trk).push_back(trk_ids[t]);
    return a;
  }
  std::vector<float> iou(nd * nt);
  for (std::size_t d = 0; d < nd; ++d)
    for (std::size_t t = 0; t < nt; ++t) iou[d * nt + t] = mask_iou(det_masks[d], trk_masks[t], plane);
  for (std::size_t t = 0; t < nt; ++t) {
    bool matched = false;
    for (std::size_t d = 0; d < nd && !matched; ++d) matched = iou[d * nt + t] >= cfg.trk_assoc_iou_thresh;
    if (!trk_nonempty[t]) a.empty_trk.push_back(trk_ids[t]);
    else if (!matched) a.unmatched_trk.push_back(trk_ids[t]);
  }
  for (std::size_t d = 0; d < nd; ++d) {
    const float* row = &iou[d * nt];
    bool any_match = false;
    std::vector<int64_t>& matched = a.det_to_matched_trk[static_cast<int>(d)];
    std::size_t best = 0;
    for (std::size_t t = 0; t < nt; ++t) {
      if (row[t] >= cfg.assoc_iou_thresh) matched.push_back(trk_ids[t]), any_match = true;
      if (row[t] > row[best]) best = t;  // np.argmax: the first maximum
    }
    const bool is_new = det_scores[d] >= cfg.new_det_thresh && !any_match;
    if (is_new) a.new_det.push_back(static_cast<int>(d));
    if (det_scores[d] >= kHighConf && !is_new && row[best] >= kHighIou) {
      // a later detection wins; the key keeps its first place (a Python dict)
      if (!a.trk_to_high_conf_det.count(trk_ids[best])) a.high_conf_order.push_back(trk_ids[best]);
      a.trk_to_high_conf_det[trk_ids[best]] = static_cast<int>(d);
    }
  }
  return a;
}

std::set<int64_t> process_hotstart(int frame, bool reverse, const Association& a,
                                   const std::vector<int64_t>& new_det_obj_ids, HotstartState& s,
                                   const PlannerConfig& cfg) {
  std::set<int64_t> removed_now;
  const int diff = reverse ? frame + cfg.hotstart_delay : frame - cfg.hotstart_delay;
  // Step 1: first frames and keep-alive counters
  for (int64_t id : new_det_obj_ids) {
    s.obj_first_frame_idx.emplace(id, frame);
    s.trk_keep_alive[id] = cfg.init_trk_keep_alive;
  }
  std::set<int64_t> matched;
  for (const auto& kv : a.det_to_matched_trk) matched.insert(kv.second.begin(), kv.second.end());
  for (int64_t id : matched) s.trk_keep_alive[id] = std::min(cfg.max_trk_keep_alive, s.trk_keep_alive[id] + 1);
  for (int64_t id : a.unmatched_trk) {
    s.unmatched_frame_inds[id].push_back(frame);
    s.trk_keep_alive[id] = std::max(cfg.min_trk_keep_alive, s.trk_keep_alive[id] - 1);
  }
  if (cfg.decrease_trk_keep_alive_for_empty_masklets)
    for (int64_t id : a.empty_trk) s.trk_keep_alive[id] = std::max(cfg.min_trk_keep_alive, s.trk_keep_alive[id] - 1);
  // Step 2: objects unmatched on hotstart_unmatch_thresh frames within their hotstart
  std::set<int64_t>& suppressed = s.suppressed_obj_ids[frame];
  for (const auto& [id, frames] : s.unmatched_frame_inds) {
    if (s.removed_obj_ids.count(id) || removed_now.count(id)) continue;
    if (static_cast<int>(frames.size()) >= cfg.hotstart_unmatch_thresh && within_hotstart(s, id, diff, reverse))
      removed_now.insert(id);
    if (s.trk_keep_alive[id] <= 0 && !cfg.suppress_unmatched_only_within_hotstart && !s.removed_obj_ids.count(id) &&
        !removed_now.count(id))
      suppressed.insert(id);
  }
  // Step 3: later objects that share a detection with an earlier one
  auto first_frame = [&](int64_t id) {
    auto it = s.obj_first_frame_idx.find(id);
    return it == s.obj_first_frame_idx.end() ? 0 : it->second;
  };
  for (const auto& kv : a.det_to_matched_trk) {
    const std::vector<int64_t>& ids = kv.second;
    if (ids.size() < 2) continue;
    int64_t first = ids[0];  // min (max in reverse) by first frame; the first on ties
    for (int64_t id : ids)
      if (reverse ? first_frame(id) > first_frame(first) : first_frame(id) < first_frame(first)) first = id;
    for (int64_t id : ids)
      if (id != first) s.overlap_pair_to_frame_inds[{first, id}].push_back(frame);
  }
  for (const auto& [pair, frames] : s.overlap_pair_to_frame_inds) {
    const int64_t id = pair.second;
    if (s.removed_obj_ids.count(id) || removed_now.count(id)) continue;
    if (within_hotstart(s, id, diff, reverse) && static_cast<int>(frames.size()) >= cfg.hotstart_dup_thresh)
      removed_now.insert(id);
  }
  s.removed_obj_ids.insert(removed_now.begin(), removed_now.end());
  return removed_now;
}

std::vector<uint8_t> suppress_recent_occlusion(const std::vector<float*>& masks, std::size_t plane,
                                               const std::vector<int64_t>& obj_ids, int frame, bool reverse,
                                               float threshold, const std::set<int64_t>& newly_removed,
                                               std::map<int64_t, int64_t>& last_occluded) {
  constexpr int64_t kNever = -1, kAlways = 100000;
  const std::size_t n = masks.size();
  std::vector<uint8_t> suppress(n, 0);
  std::vector<int64_t> last(n);
  for (std::size_t i = 0; i < n; ++i) {
    auto it = last_occluded.find(obj_ids[i]);
    last[i] = it != last_occluded.end() ? it->second : newly_removed.count(obj_ids[i]) ? kAlways : kNever;
  }
  // _get_objects_to_suppress_based_on_most_recently_occluded
  if (n > 1) {
    auto later = [&](int64_t a, int64_t b) { return reverse ? a < b : a > b; };
    for (std::size_t i = 0; i < n; ++i)
      for (std::size_t j = i + 1; j < n; ++j) {
        if (!(mask_iou(masks[i], masks[j], plane) >= threshold)) continue;
        if (later(last[i], last[j]) && last[j] > -1) suppress[i] = 1;  // j may suppress i
        if (later(last[j], last[i]) && last[i] > -1) suppress[j] = 1;
      }
  }
  // the new metadata holds the tracked objects only (none on a frame without objects)
  std::map<int64_t, int64_t> next;
  for (std::size_t i = 0; i < n; ++i) {
    if (!nonempty(masks[i], plane) || suppress[i]) last[i] = frame;  // occluded or suppressed now
    next[obj_ids[i]] = last[i];
    if (suppress[i]) std::fill(masks[i], masks[i] + plane, -10.0f);
  }
  last_occluded = std::move(next);
  return suppress;
}

std::vector<uint8_t> suppress_area_shrinkage(const std::vector<float*>& masks, std::size_t plane,
                                             float shrink_threshold) {
  const std::size_t n = masks.size();
  std::vector<uint8_t> suppress(n, 0);
  if (n <= 1) return suppress;  // the pixel-wise constraint leaves a single mask as it is
  std::vector<int64_t> before(n, 0), after(n, 0);
  for (std::size_t p = 0; p < plane; ++p) {
    std::size_t best = 0;  // _apply_non_overlapping_constraints: the first maximum keeps its value
    for (std::size_t k = 1; k < n; ++k)
      if (masks[k][p] > masks[best][p]) best = k;
    for (std::size_t k = 0; k < n; ++k) {
      const float v = masks[k][p];
      before[k] += v > 0.0f;
      after[k] += (k == best ? v : std::min(v, -10.0f)) > 0.0f;
    }
  }
  for (std::size_t k = 0; k < n; ++k) {
    const float ratio = static_cast<float>(after[k]) / static_cast<float>(std::max<int64_t>(before[k], 1));
    if (ratio >= shrink_threshold) continue;
    suppress[k] = 1;
    for (std::size_t p = 0; p < plane; ++p) masks[k][p] = std::min(masks[k][p], -10.0f);
  }
  return suppress;
}

}  // namespace video
}  // namespace sam3
