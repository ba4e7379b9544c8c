// The tracker's compiled components, called as the official tracker calls its modules:
// image features of a frame, the SAM heads (with the official mask/token choice), the
// memory encoder, the memory attention and the mask-as-output path. Internal.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "component.h"
#include "sam3/image.h"
#include "sam3/manifest.h"

namespace sam3 {
namespace video {

using detail::ffi::Tensor;

// The features of one frame: the tracker's (image encoder outputs trk_hr0, trk_hr1,
// trk_embed) and, for concept tracking, the detector's (fpn0..2; empty otherwise).
struct FrameFeatures {
  Tensor hr0, hr1, embed;
  std::vector<Tensor> detector;
  std::size_t bytes() const;
};

// One object's SAM-head result after the official choice (Sam3TrackerBase._forward_sam_heads).
struct HeadsOutput {
  std::vector<float> low_res;   // M*M logits of the chosen mask; NO_OBJ_SCORE if no object
  std::vector<float> obj_ptr;   // C
  float object_score = 0;       // logit
  float iou_score = 0;          // max of the IoUs the heads return (multimask: 3, else 1)
};

// A prepared memory attention input (the bank selected for one object on one frame).
struct MemoryInput {
  std::vector<const std::vector<uint16_t>*> memories;  // bf16 spatial memories, Cm*G*G each
  std::vector<int64_t> tpos;                            // maskmem_tpos_enc index per memory
  std::vector<const std::vector<float>*> ptrs;          // object pointers, C each
  std::vector<float> ptr_pos;                           // normalised temporal position per pointer
};

class TrackerModel {
 public:
  TrackerModel(const Manifest& manifest, const std::map<std::string, const detail::Component*>& components,
               std::map<std::string, double>& timings);

  const TrackerConfig& config() const { return cfg_; }
  int mask_size() const { return cfg_.low_res_mask_size; }

  // preprocess_video_frame + image encoder; keeps the tracker's three levels, and the
  // detector's when `with_detector`.
  FrameFeatures encode_frame(const Image& frame, bool with_detector = false) const;

  // The SAM heads on `pix` ([1,C,G,G]; the frame's embedding, or memory-conditioned),
  // with `no_mem` adding no_mem_embed first. Points in input-resolution pixels (none:
  // the official (0,0) point with label -1), an optional low-res mask prompt (M*M).
  HeadsOutput heads(const Tensor& pix, bool no_mem, const FrameFeatures& f,
                    const std::vector<float>& coords, const std::vector<int32_t>& labels,
                    const std::vector<float>* mask_prompt, bool multimask) const;

  // Sam3TrackerBase._use_mask_as_output for a mask at input_mask_size (values 0..1).
  HeadsOutput mask_as_output(const FrameFeatures& f, const std::vector<float>& mask) const;

  // _encode_new_memory from high-res logits (size^2, image_size by default): sigmoid (or
  // > 0 for masks from clicks), x scale + bias, resized to input_mask_size unless they
  // are that size already; returns bf16 values, as the predictor stores them.
  std::vector<uint16_t> encode_memory(const FrameFeatures& f, const std::vector<float>& high_res,
                                      float object_score, bool binarize, int size = 0) const;

  // The memory attention -> pix_feat_with_mem [1,C,G,G].
  Tensor attend(const FrameFeatures& f, const MemoryInput& in) const;

  // no_obj_ptr (C), the pointer of an empty mask (the heads return it with every call;
  // computed with `f` if no call was made yet).
  const std::vector<float>& no_obj_ptr(const FrameFeatures& f) const;

 private:
  const detail::Component& get(const char* name) const;
  TrackerConfig cfg_;
  int image_size_, grid_;
  std::map<std::string, const detail::Component*> components_;
  std::map<std::string, double>& timings_;
  mutable std::vector<float> no_obj_ptr_;
};

}  // namespace video
}  // namespace sam3
