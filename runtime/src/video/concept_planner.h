// Concept tracking's host heuristics (sam3_video_base.py): matching the detector's
// masks with the tracked ones (_associate_det_trk) and the hotstart bookkeeping that
// removes spurious new objects (_process_hotstart). Internal, no TVM.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <utility>
#include <vector>

namespace sam3 {
namespace video {

// The official attributes these functions read (build_sam3_video_model's values).
struct PlannerConfig {
  float assoc_iou_thresh = 0.1f;      // detection <-> track match (detection side)
  float trk_assoc_iou_thresh = 0.5f;  // a track counts as matched
  float new_det_thresh = 0.7f;        // a detection may start a new object
  int hotstart_delay = 15, hotstart_unmatch_thresh = 8, hotstart_dup_thresh = 8;
  int init_trk_keep_alive = 30, max_trk_keep_alive = 30, min_trk_keep_alive = -1;
  bool suppress_unmatched_only_within_hotstart = true;
  bool decrease_trk_keep_alive_for_empty_masklets = false;
};

// perflib.masks_ops.mask_iou of two logit planes (> 0): intersection / max(union, 1)
float mask_iou(const float* a, const float* b, std::size_t plane);

struct Association {
  std::vector<int> new_det;                        // detection indices that start objects
  std::vector<int64_t> unmatched_trk, empty_trk;   // track ids (non-empty unmatched / empty)
  std::map<int, std::vector<int64_t>> det_to_matched_trk;  // every detection, its matched ids
  std::map<int64_t, int> trk_to_high_conf_det;     // track id -> one detection (reconditioning)
  std::vector<int64_t> high_conf_order;            // its keys in the official dict's order
};

// _associate_det_trk on low-res mask logits of the same size (plane pixels each):
// IoUs of logits > 0, many-to-one matching (the Hungarian option is off in the shipped
// model). With no tracks every detection is new; with no detections every non-empty
// track is unmatched.
Association associate_det_trk(const std::vector<const float*>& det_masks, const std::vector<float>& det_scores,
                              const std::vector<const float*>& trk_masks, const std::vector<int64_t>& trk_ids,
                              std::size_t plane, const PlannerConfig& cfg);

// rank0_metadata's hotstart part.
struct HotstartState {
  std::map<int64_t, int> obj_first_frame_idx;
  std::map<int64_t, std::vector<int>> unmatched_frame_inds;
  std::map<int64_t, int> trk_keep_alive;
  std::map<std::pair<int64_t, int64_t>, std::vector<int>> overlap_pair_to_frame_inds;
  std::set<int64_t> removed_obj_ids;
  std::map<int, std::set<int64_t>> suppressed_obj_ids;  // frame -> ids
};

// _process_hotstart: returns the ids removed on this frame (and updates `state`).
std::set<int64_t> process_hotstart(int frame, bool reverse, const Association& a,
                                   const std::vector<int64_t>& new_det_obj_ids, HotstartState& state,
                                   const PlannerConfig& cfg);

// _suppress_overlapping_based_on_recent_occlusion on the tracked objects' low-res
// logits (one plane each, in tracking order), in place: of two masks with IoU >= the
// threshold, the one occluded (empty or suppressed) more recently in tracking order is set
// to -10. `last_occluded` (obj_id_to_last_occluded) is read and updated; an object not in
// it counts as never occluded (-1), or as always (100000) if hotstart removed it now.
// Returns the suppressed flags.
std::vector<uint8_t> suppress_recent_occlusion(const std::vector<float*>& masks, std::size_t plane,
                                               const std::vector<int64_t>& obj_ids, int frame, bool reverse,
                                               float threshold, const std::set<int64_t>& newly_removed,
                                               std::map<int64_t, int64_t>& last_occluded);

// Sam3TrackerPredictor._suppress_object_pw_area_shrinkage on N logit planes (all tracked
// objects, before their memory is encoded), in place: a mask that would keep less than
// `shrink_threshold` (0.3) of its area (> 0) under the pixel-wise non-overlap constraint
// is clamped to at most -10; the others are left as they are (not made non-overlapping).
// Returns the suppressed flags.
std::vector<uint8_t> suppress_area_shrinkage(const std::vector<float*>& masks, std::size_t plane,
                                             float shrink_threshold = 0.3f);

}  // namespace video
}  // namespace sam3
