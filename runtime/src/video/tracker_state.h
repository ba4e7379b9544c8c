// One tracker inference state: the official Sam3TrackerPredictor's host logic for a
// batch of objects (inputs per object and frame, temporary and consolidated outputs,
// conditioning vs non-conditioning frames, preflight, one propagation step, removal).
// Method names follow the official ones. Internal.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <set>
#include <vector>

#include "sam3/video.h"
#include "video/memory_bank.h"
#include "video/spill_store.h"
#include "video/tracker_model.h"

namespace sam3 {
namespace video {

using FeatureFn = std::function<std::shared_ptr<const FrameFeatures>(int frame)>;

struct PointInputs {
  std::vector<float> coords;  // x, y pairs in input-resolution pixels
  std::vector<int32_t> labels;
};

// Per object of the state, its low-res logits and object score on one frame.
struct StepOutput {
  std::vector<int> obj_ids;
  std::vector<ObjFramePtr> outs;
};

class TrackerState {
 public:
  TrackerState(const TrackerModel& model, int num_frames, int video_w, int video_h, FeatureFn features,
               VideoMemory policy, SpillStore* spill);

  const std::vector<int>& obj_ids() const { return obj_ids_; }
  bool has_object(int obj_id) const { return obj_index_.count(obj_id) > 0; }
  bool tracking_has_started() const { return tracking_has_started_; }
  bool has_inputs() const;                     // some object has a prompt
  int first_cond_frame() const;                // -1 when none (after preflight)
  int first_prompt_frame() const;              // earliest frame with a prompt, -1 when none

  void add_new_points(int frame, int obj_id, PointInputs points);
  void add_new_mask(int frame, int obj_id, const std::vector<uint8_t>& mask_video_res);
  // A mask of any size (mh x mw, non-zero = object), as the official add_new_mask takes
  // one: resized (antialiased) to the input mask size and to the video size (> 0.5).
  void add_new_mask(int frame, int obj_id, const std::vector<uint8_t>& mask, int mh, int mw);
  void propagate_in_video_preflight();
  // One frame of propagate_in_video. Without `run_mem_encoder` (concept tracking) a
  // tracked frame's memory is left for set_frame_memory.
  StepOutput track_frame(int frame, bool reverse, bool run_mem_encoder = true);
  // The memories of the frame's output (every object, in obj_ids() order), as
  // Sam3VideoBase._tracker_update_memories writes them.
  void set_frame_memory(int frame, std::vector<std::vector<uint16_t>> memories);
  void remove_object(int obj_id);
  // Sam3VideoInferenceWithInstanceInteractivity.clear_detector_added_cond_frame_in_tracker:
  // the object's mask-only inputs (the detector's) within `window` frames of a refined
  // frame stop being conditioning frames, for every object of the state.
  void clear_detector_cond_frames(int obj_id, int refined_frame, int window);
  // The frame's masks of every object at video size (logits) after a prompt on it, as
  // add_new_points_or_box / add_new_mask return them.
  std::vector<std::vector<float>> video_res_masks(int frame);

  // Memory bookkeeping (docs/video.md): releases (spills or drops, by policy) the spatial
  // memories and logits of non-conditioning frames outside `keep`.
  void release_except(const std::set<int>& keep);
  // The frames whose spatial memory tracking `frame` would read (its memory plan).
  std::set<int> memory_frames_for(int frame, bool reverse) const;
  std::size_t bytes() const;
  std::size_t frames_with_memory() const;

 private:
  int obj_id_to_idx(int obj_id);
  ObjFramePtr run_prompt(int frame, bool is_init_cond_frame, const PointInputs* points,
                         const std::vector<float>* mask_inputs, const std::vector<float>* prev_mask_logits);
  FrameOutPtr consolidate(int frame, bool is_cond, bool run_mem_encoder, bool at_video_res);
  void add_output_per_object(int frame, const FrameOutPtr& out, bool cond);
  void clear_non_cond_mem_around_input(int frame);
  void clear_all_points_in_frame(int frame, int obj_id);
  void reset_tracking_results();
  void clear_all_points_in_video();
  bool use_multimask(bool is_init_cond_frame, const PointInputs* points) const;
  // an output's spatial memory / low-res logits, read back from the spill file if needed;
  // nullptr when they were dropped (VideoMemory::Drop)
  const std::vector<uint16_t>* memory_of(ObjFrame& o) const;
  const std::vector<float>* logits_of(ObjFrame& o) const;
  bool clear_non_cond_mem() const;

  const TrackerModel& model_;
  const TrackerConfig& cfg_;
  int num_frames_, width_, height_;
  FeatureFn features_;
  VideoMemory policy_;
  SpillStore* spill_;

  std::vector<int> obj_ids_;
  std::map<int, int> obj_index_;
  std::vector<std::map<int, PointInputs>> point_inputs_;
  std::vector<std::map<int, std::vector<uint8_t>>> mask_inputs_;
  OutputDict output_;
  std::vector<ObjDict> per_obj_, temp_;
  std::set<int> consolidated_cond_, consolidated_non_cond_;
  std::map<int, bool> frames_already_tracked_;  // frame -> reverse
  bool tracking_has_started_ = false;
  bool last_prompt_cond_ = true;  // storage of the last add_new_* (for video_res_masks)
};

}  // namespace video
}  // namespace sam3
