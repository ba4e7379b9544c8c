// Host-side mask operations of the official video tracker (sam3_tracking_predictor.py,
// sam3_tracker_utils.py, sam3_video_inference.py), written once for the runtime.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace sam3 {

// Logit the tracker writes for "no object" (sam3_tracker_base.NO_OBJ_SCORE).
constexpr float kNoObjScore = -1024.0f;

// F.interpolate(x[None, None], (dst_h, dst_w), mode="bilinear", align_corners=False,
// antialias=True) on float32, as PyTorch's CPU kernel computes it: separable, width
// then height, triangle filter widened by the scale when downsampling, weights
// normalised per output pixel. (Upsampling gives plain bilinear weights.)
std::vector<float> resize_bilinear_aa(const float* src, int src_h, int src_w, int dst_h, int dst_w);

// For every pixel, the area of its 8-connected component of non-zero pixels (0 where the
// mask is zero), as sam3.perflib.connected_components does (skimage.measure.label).
std::vector<int32_t> component_areas(const uint8_t* mask, int h, int w);

// sam3_tracker_utils.fill_holes_in_mask_scores(mask, max_area, fill_holes=True,
// remove_sprinkles=True) on one h x w plane of logits, in place: background components
// (logit <= 0) of at most max_area pixels become 0.1; then foreground components (> 0)
// of at most min(max_area, foreground area / 2) pixels become -0.1.
void fill_holes_in_mask_scores(float* logits, int h, int w, int max_area);

// Sam3TrackerBase._apply_non_overlapping_constraints on N planes of logits (one per
// object, same size), in place: at each pixel the object with the highest logit (the
// first on ties) keeps its value, the others are clamped to at most -10.
void apply_non_overlapping_constraints(const std::vector<float*>& planes, std::size_t plane_size);

// Sam3TrackerPredictor._apply_object_wise_non_overlapping_constraints on binary masks
// with background 0 (as the video predictor's output step calls it): where several masks
// overlap, the pixel goes to the object with the highest score (the first on ties); the
// others lose it. Masks are 0/1 planes of plane_size pixels, in place.
void apply_object_wise_non_overlap(const std::vector<uint8_t*>& masks, const std::vector<float>& scores,
                                   std::size_t plane_size);

// The video detector's score (Sam3Image._update_scores_and_boxes with
// supervise_joint_box_scores, as build_sam3_video_model builds it): the logit
// clamp(inverse_sigmoid(sigmoid(class_logit) * sigmoid(presence_logit)), -10, 10), with
// model_misc.inverse_sigmoid's eps 1e-3. The image path multiplies the two instead.
float joint_score_logit(float class_logit, float presence_logit);

// sam3.perflib.nms.nms_masks on `count` mask logits of h x w: the detections with
// probs > prob_threshold, greedily by descending prob (generic_nms_cpu), each dropping
// the later ones whose mask IoU (logits > 0; union clamped to 1) exceeds iou_threshold.
// Returns keep flags. Equal probs (unlikely: the joint score is continuous) go higher
// index first, as numpy's reversed stable argsort would order them.
std::vector<uint8_t> nms_masks(const std::vector<float>& probs, const float* masks, int h, int w,
                               float prob_threshold, float iou_threshold);

// torch's float32 <-> bfloat16 conversions (round to nearest even; NaN stays NaN).
uint16_t float_to_bf16(float x);
float bf16_to_float(uint16_t b);

}  // namespace sam3
