// What the tracker stores per frame and how it picks the memories a frame attends to
// (Sam3TrackerPredictor's output dicts; Sam3TrackerBase._prepare_memory_conditioned_features,
// frame_filter, select_closest_cond_frames). Internal.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <vector>

#include "sam3/manifest.h"

namespace sam3 {
namespace video {

// One object's output on one frame: a slice of the official batched output dict.
struct ObjFrame {
  std::vector<float> pred_masks;        // low-res logits (M*M); empty = None
  std::vector<uint8_t> video_res_mask;  // add_mask outputs: the mask at video size, standing
                                        // for pred_masks_video_res = +-1024; empty = none
  std::vector<uint16_t> maskmem;        // spatial memory, bf16 (Cm*G*G); empty = None
  std::vector<float> obj_ptr;           // C
  float object_score = 10.f;            // logit
  float iou_score = 0.f;
  // where maskmem / pred_masks went when released from RAM (-1: not spilled); the
  // vectors are then empty until read back (TrackerState::memory_of / logits_of)
  int64_t maskmem_spilled = -1, pred_masks_spilled = -1;
  std::size_t maskmem_size = 0, pred_masks_size = 0;
  std::size_t bytes() const;  // in RAM
};
using ObjFramePtr = std::shared_ptr<ObjFrame>;

// A state's batched output on one frame.
struct FrameOut {
  std::vector<ObjFramePtr> objs;  // by object index
  bool has_eff = false;           // "eff_iou_score" present (memory selection)
  float eff = 0.f;
  bool consolidated = false;      // from consolidation: iou_score is [B,1], not [B]
};
using FrameOutPtr = std::shared_ptr<FrameOut>;

struct OutputDict {
  std::map<int, FrameOutPtr> cond, non_cond;
};
struct ObjDict {
  std::map<int, ObjFramePtr> cond, non_cond;
};

// Sam3TrackerBase.cal_mem_score over a batch: mean of (sigmoid(s)*2-1 if s > 0 else 0)
// times the IoU score. The official product broadcasts [B,1] scores with [B] IoUs
// (track_step outputs) into B x B; with [B,1] IoUs (consolidated) it is element-wise.
float mem_score(const std::vector<ObjFramePtr>& objs, bool elementwise);

// The memories and pointers one frame attends to, shared by the state's objects.
struct MemoryPlan {
  struct Memory {
    int frame;
    bool cond;
    int64_t tpos;  // index into maskmem_tpos_enc
  };
  struct Pointer {
    int frame;
    bool cond;
    float pos;  // relative position / (min(num_frames, max_obj_ptrs_in_encoder) - 1)
  };
  std::vector<Memory> memories;
  std::vector<Pointer> pointers;
};

// select_closest_cond_frames: up to `max` conditioning frames closest to `frame`
// (the nearest before, the nearest at-or-after, then by distance), in that order.
std::vector<int> select_closest_cond_frames(int frame, const std::vector<int>& cond_frames, int max,
                                            bool keep_first);

// frame_filter (memory selection): non-conditioning frames with eff_iou_score above the
// threshold, nearest last, plus the adjacent frame.
std::vector<int> frame_filter(const OutputDict& out, bool reverse, int frame, int num_frames,
                              const TrackerConfig& cfg);

// _prepare_memory_conditioned_features' selection for a non-initial frame.
MemoryPlan plan_memory(const OutputDict& out, int frame, bool reverse, int num_frames,
                       const TrackerConfig& cfg);

}  // namespace video
}  // namespace sam3
