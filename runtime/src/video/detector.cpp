#include "video/detector.h"

#include "model_impl.h"
#include "sam3/postprocess.h"
#include "sam3/video_postprocess.h"

namespace sam3 {
namespace video {
using detail::fdata;
using detail::kBool;
using detail::kF32;
using detail::kI32;
using detail::kI64;

Detector::Detector(const Manifest& manifest, const detail::Component& text_encoder,
                   const detail::Component& grounding_head, const Tokenizer& tokenizer,
                   std::map<std::string, double>& timings)
    : manifest_(manifest), text_encoder_(text_encoder), grounding_head_(grounding_head),
      tokenizer_(tokenizer), timings_(timings) {}

void Detector::set_prompt(const ConceptPromptSpec& prompt) {
  prompt_ = prompt;
  const int L = manifest_.context_length;
  // a box-only prompt runs with the text "visual" (TEXT_ID_FOR_VISUAL)
  std::vector<int64_t> ids = tokenizer_.encode(prompt.text.empty() ? std::string("visual") : prompt.text, L);
  detail::Timer t(timings_, "text_encoder", true);
  text_ = text_encoder_.run({detail::tensor_from({1, L}, kI64, ids.data())});
}

Detections Detector::detect(const FrameFeatures& f, int frame, bool allow_new_detections,
                            const DetectorConfig& cfg) const {
  if (f.detector.size() != 3) throw Error("internal: the frame was encoded without the detector's features");
  if (text_.empty()) throw Error("internal: no concept prompt");
  // no new detections allowed (a box-only prompt off its frame): the official shift of
  // every prob by -1e8 leaves nothing, so the grounding head is skipped
  if (!allow_new_detections) return Detections{};
  const int nb = manifest_.max_boxes, Q = manifest_.num_queries, M = manifest_.mask_size;
  std::vector<float> boxes(nb * 4, 0.f);
  std::vector<int64_t> labels(nb, 0);
  std::vector<uint8_t> pad(nb, 1);
  if (prompt_.box_cxcywh && prompt_.box_frame == frame) {  // the exemplar lives on its frame only
    std::copy(prompt_.box_cxcywh->begin(), prompt_.box_cxcywh->end(), boxes.begin());
    labels[0] = prompt_.box_positive ? 1 : 0;
    pad[0] = 0;
  }
  std::vector<Tensor> out;
  {
    detail::Timer t(timings_, "grounding_head", true);
    out = grounding_head_.run({f.detector[0], f.detector[1], f.detector[2], text_[0], text_[1],
                               detail::tensor_from({nb, 1, 4}, kF32, boxes.data()),
                               detail::tensor_from({nb, 1}, kI64, labels.data()),
                               detail::tensor_from({1, nb}, kBool, pad.data())});
  }
  detail::Timer t(timings_, "detections", true);
  const float* logits = fdata(out[0]);
  const float* cxcywh = fdata(out[1]);
  const float presence = fdata(out[2])[0];
  const float* masks = fdata(out[3]);
  const std::size_t plane = static_cast<std::size_t>(M) * M;
  std::vector<float> probs(Q);
  for (int q = 0; q < Q; ++q) probs[q] = sigmoid(joint_score_logit(logits[q], presence));
  if (cfg.det_nms_thresh > 0.f) {  // suppressed detections: logit - 1e4, a prob of 0
    const std::vector<uint8_t> keep =
        nms_masks(probs, masks, M, M, cfg.score_threshold_detection, cfg.det_nms_thresh);
    for (int q = 0; q < Q; ++q)
      if (!keep[q]) probs[q] = sigmoid(joint_score_logit(logits[q], presence) - 1e4f);
  }
  Detections d;
  for (int q = 0; q < Q; ++q) {
    if (!(probs[q] > cfg.score_threshold_detection)) continue;
    const float* b = cxcywh + 4 * q;
    d.scores.push_back(probs[q]);
    d.boxes_xyxy.push_back({b[0] - 0.5f * b[2], b[1] - 0.5f * b[3], b[0] + 0.5f * b[2], b[1] + 0.5f * b[3]});
    d.masks.emplace_back(masks + plane * q, masks + plane * (q + 1));
  }
  return d;
}

}  // namespace video
}  // namespace sam3
