// Post-processing of the grounding head (concept prompts) and of the interactive
// mask decoder (point/box prompts), as the official Python code does it.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

namespace sam3 {

// Official constants (sam3.model_builder, SAM3InteractiveImagePredictor, SAM2Transforms).
constexpr float kStabilityDelta = 0.05f;
constexpr float kStabilityThreshold = 0.98f;
constexpr int kMaxHoleArea = 256;
constexpr float kHoleFillLogit = 10.0f;  // mask_threshold (0) + 10
constexpr float kLowResClamp = 32.0f;

// F.interpolate(x[None, None], (dst_h, dst_w), mode="bilinear", align_corners=False,
// antialias=False) on a row-major float32 src_h x src_w map, reproducing PyTorch's CPU
// kernels (including their FMA contraction), so results are bit-identical to torch on
// x86-64 with AVX2/AVX512 kernels.
std::vector<float> resize_bilinear(const float* src, int src_h, int src_w, int dst_h, int dst_w);

// 1 / (1 + exp(-x)) in float, as torch.sigmoid (within an ulp of its SIMD exp).
float sigmoid(float x);

struct Detection {
  float score;                      // sigmoid(logit) * sigmoid(presence)
  std::array<float, 4> box_xyxy;    // pixels
  std::vector<uint8_t> mask;        // img_h * img_w, row-major, 0/1
  int query;                        // index into the head's queries
};

// Sam3Processor._forward_grounding on one image: keeps queries whose score is above
// `threshold`, ordered by descending score (ties: lower query first).
// logits [Q], boxes_cxcywh [Q,4] normalised, masks [Q,M,M] logits.
std::vector<Detection> select_detections(const float* logits, const float* boxes_cxcywh,
                                         float presence_logit, const float* masks, int num_queries,
                                         int mask_size, int img_h, int img_w, float threshold);

// Masks the decoder returns for one prompt, as MaskDecoder.forward selects them.
struct MaskCandidates {
  std::vector<float> logits;  // count() * M * M
  std::vector<float> iou;
  std::vector<int> index;     // decoder output of each: 0 = single-mask token, 1..3 multimask
  int count() const { return static_cast<int>(iou.size()); }
};

// IoU of (logits > delta) and (logits > -delta); 1 when the latter is empty.
float stability_score(const float* logits, int count, float delta = kStabilityDelta);

// masks [4,M,M], iou [4]. multimask: outputs 1..3. Otherwise output 0, unless
// dynamic_stability and its stability score is below 0.98: then the multimask output
// with the highest IoU (first on ties).
MaskCandidates select_mask_candidates(const float* masks, const float* iou, int mask_size,
                                      bool multimask, bool dynamic_stability = true);

// Background (logits <= 0) components of at most max_area pixels, 8-connected as
// skimage.measure.label / cc_torch / the Triton kernel label them, get logit 10.
// This includes small background regions touching the border. max_area <= 0 does
// nothing. Returns the number of pixels changed.
int fill_holes(std::vector<float>& logits, int h, int w, int max_area);

struct InteractiveResult {
  std::vector<float> low_res_logits;  // chosen mask, M*M, clamped to ±32, holes not filled
  std::vector<uint8_t> mask;          // img_h * img_w, row-major, 0/1
  float iou;
  int index;                          // decoder output (0..3) it came from
};

// select_mask_candidates, then for the highest-IoU candidate (first on ties, as the CLI
// picks): fill_holes, resize_bilinear to the image, logits > 0.
InteractiveResult best_interactive_mask(const float* masks, const float* iou, int mask_size,
                                        int img_h, int img_w, bool multimask,
                                        bool dynamic_stability = true,
                                        int max_hole_area = kMaxHoleArea);

}  // namespace sam3
