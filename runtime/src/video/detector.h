// Concept tracking's detector step (Sam3VideoBase.run_backbone_and_detection on one frame):
// the grounding head with the video detector's scores and mask NMS. Internal.
#pragma once

#include <array>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "component.h"
#include "sam3/manifest.h"
#include "sam3/tokenizer.h"
#include "video/tracker_model.h"

namespace sam3 {
namespace video {

// The detections kept on one frame, in query order.
struct Detections {
  std::vector<float> scores;                     // sigmoid of the joint score logit
  std::vector<std::array<float, 4>> boxes_xyxy;  // normalised
  std::vector<std::vector<float>> masks;         // M*M logits
  std::size_t size() const { return scores.size(); }
};

// A concept prompt: text (empty: the official "visual" text of a box-only prompt) and at
// most one exemplar box (normalised cx, cy, w, h; label 1 positive) on one frame.
struct ConceptPromptSpec {
  std::string text;
  std::optional<std::array<float, 4>> box_cxcywh;
  bool box_positive = true;
  int box_frame = -1;
};

class Detector {
 public:
  Detector(const Manifest& manifest, const detail::Component& text_encoder,
           const detail::Component& grounding_head, const Tokenizer& tokenizer,
           std::map<std::string, double>& timings);

  // Encodes the prompt's text once (the official feature cache keeps the latest).
  void set_prompt(const ConceptPromptSpec& prompt);
  const ConceptPromptSpec& prompt() const { return prompt_; }

  // The frame's detections with prob > score_threshold_detection after NMS
  // (det_nms_thresh > 0); none when new detections are not allowed (the official
  // shift of every prob by -1e8).
  Detections detect(const FrameFeatures& f, int frame, bool allow_new_detections,
                    const DetectorConfig& cfg) const;

 private:
  const Manifest& manifest_;
  const detail::Component& text_encoder_;
  const detail::Component& grounding_head_;
  const Tokenizer& tokenizer_;
  std::map<std::string, double>& timings_;
  ConceptPromptSpec prompt_;
  std::vector<detail::ffi::Tensor> text_;  // text_feats, text_mask
};

}  // namespace video
}  // namespace sam3
