// Concept tracking: detect every instance of a text / exemplar prompt on each frame and
// track them (the official Sam3VideoInferenceWithInstanceInteractivity's host logic:
// _det_track_one_frame's detect, propagate, plan, execute and output steps, the hotstart
// output delay and the action history that picks full propagation or a fetch). Method
// and field names follow the official ones. Internal; sam3::VideoSession drives it.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "sam3/manifest.h"
#include "sam3/video.h"
#include "video/concept_planner.h"
#include "video/detector.h"
#include "video/spill_store.h"
#include "video/tracker_state.h"

namespace sam3 {
namespace video {

// Test oracles (the parity reference's, compiler/sam3_tvm/tools/concept_reference.py):
// `detections(frame)` replaces the detector's raw detections (then threshold, NMS and
// allow_new_detections as the detector applies them); `truth(frame)` gives every true
// object's low-res logits, and an object spawned over one of them (mask IoU >= 0.5)
// follows it in the detect-and-track step, object score +-10.
struct ConceptHooks {
  std::function<Detections(int frame)> detections;
  std::function<std::vector<std::vector<float>>(int frame)> truth;
};

// What the host logic decided on one processed frame (concept_reference._trace_hooks).
struct FrameTrace {
  int frame = 0;
  bool reverse = false;
  std::string phase;
  std::vector<int64_t> tracked, spawned, matched, unmatched, empty, removed, suppressed, occlusion_suppressed,
      reconditioned;
  int detections = 0;
  std::vector<float> scores;
  std::map<int, std::vector<int64_t>> det_matches;
  std::map<int64_t, int> high_conf_matches;
};

// A binary mask at video size, run-length encoded (COCO counts): the official keeps
// every frame's output masks for fetches and refinements.
struct PackedMask {
  std::string counts;
};

class ConceptTracker {
 public:
  ConceptTracker(const TrackerModel& tracker, Detector& detector, const DetectorConfig& cfg, int num_frames,
                 int width, int height, FeatureFn features, VideoMemory policy, SpillStore* spill,
                 std::map<std::string, double>& timings);

  void set_hooks(ConceptHooks hooks) { hooks_ = std::move(hooks); }
  const std::vector<FrameTrace>& trace() const { return trace_; }

  // Sam3VideoInference.add_prompt: starts over with this prompt and returns the frame's
  // result (nothing hidden yet).
  VideoFrameResult add_prompt(int frame, const ConceptPromptSpec& prompt);

  // propagate_in_video (the interactivity model's): a full detect-and-track pass with the
  // hotstart output delay, or a fetch of the cached outputs, as the action history says.
  void propagate(const PropagateOptions& options, const std::function<bool(const VideoFrameResult&)>& on_frame);
  int frames_to_track(const PropagateOptions& options) const;

  // add_tracker_new_points: clicks on an object (a tracked id refines it, a new id adds
  // one) on a frame that has outputs; the next propagation re-tracks the clicked objects'
  // states only (propagation_partial). Returns the frame's result.
  VideoFrameResult add_points(int frame, int obj_id, PointInputs points);

  void remove_object(int obj_id);  // throws for an unknown id
  std::vector<int> object_ids() const;
  bool has_outputs() const;
  std::size_t bytes() const;
  std::size_t frames_with_memory() const;

 private:
  // _run_single_frame_inference's output
  struct ConceptOut {
    int frame = 0;
    std::map<int64_t, PackedMask> obj_id_to_mask;
    std::map<int64_t, float> obj_id_to_score, obj_id_to_tracker_score;
    std::set<int64_t> removed_obj_ids, suppressed_obj_ids, unconfirmed_obj_ids;
  };
  struct Action {
    std::string type;
    int frame = -1;  // -1: None
    std::vector<int> obj_ids;
  };

  ConceptOut run_single_frame(int frame, bool reverse);
  Detections detect(const FrameFeatures& f, int frame, bool allow);
  VideoFrameResult postprocess(int frame, const std::map<int64_t, PackedMask>& masks,
                               const std::map<int64_t, float>& scores, const std::map<int64_t, float>& tracker_scores,
                               const std::set<int64_t>& hidden) const;
  void cache_frame_outputs(int frame, const std::map<int64_t, PackedMask>& masks, const std::set<int64_t>& hidden);
  std::vector<int> processing_order(int start, int max_frames, bool reverse, int* end) const;
  int default_start() const;
  std::pair<std::string, std::vector<int>> parse_action_history() const;
  std::vector<int64_t> global_obj_ids() const;
  void release_memory(int next_frame, bool reverse, int frame);
  bool propagate_partial(const std::vector<int>& order, bool reverse, const std::vector<int>& obj_ids,
                         const std::function<bool(const VideoFrameResult&)>& on_frame);
  PackedMask pack(const std::vector<float>& low_res) const;  // bilinear to video size, > 0

  const TrackerModel& tracker_;
  Detector& detector_;
  DetectorConfig cfg_;
  PlannerConfig pcfg_;
  int num_frames_, width_, height_;
  FeatureFn features_;
  VideoMemory policy_;
  SpillStore* spill_;
  std::map<std::string, double>& timings_;
  ConceptHooks hooks_;

  ConceptPromptSpec prompt_;
  bool has_prompt_ = false;
  std::vector<std::unique_ptr<TrackerState>> states_;
  // tracker metadata
  int64_t max_obj_id_ = -1;
  std::map<int64_t, float> obj_id_to_score_;
  std::map<int, std::map<int64_t, float>> tracker_score_frame_wise_;
  std::map<int64_t, int64_t> last_occluded_;
  HotstartState hot_;
  std::vector<int64_t> confirmation_ids_;  // masklet confirmation, by obj_ids order
  std::vector<int> confirmation_status_, consecutive_det_num_;
  std::map<int64_t, int> binding_;  // truth oracle: obj id -> truth index
  int last_detections_frame_ = -1;  // the last frame's detections (allowed), kept
  Detections last_detections_;
  // per frame
  std::vector<uint8_t> has_outputs_;
  std::map<int, std::map<int64_t, PackedMask>> cached_outputs_;
  std::vector<Action> history_;
  std::vector<FrameTrace> trace_;
  std::string phase_ = "add_prompt";
};

}  // namespace video
}  // namespace sam3
