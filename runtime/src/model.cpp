#include <chrono>
#include <cmath>
#include <future>
#include <memory>

#include "device.h"
#include "model_impl.h"
#include "sam3/postprocess.h"
#include "sam3/rle.h"
#include "sam3/safetensors.h"
#include "sam3/sam3.h"
#include "sam3/tokenizer.h"

namespace sam3 {

using detail::Component;
using detail::ffi::Tensor;

using detail::fdata;
using detail::kBool;
using detail::kF32;
using detail::kI32;
using detail::kI64;

Model::Model(const std::string& bundle_dir, const std::string& device)
    : impl_(std::make_unique<Impl>()) {
  const DLDevice dev = detail::parse_device(device);
  detail::default_thread_count();  // before TVM's thread pool exists
  impl_->manifest = load_manifest(bundle_dir);
  const Manifest& m = impl_->manifest;
  // Hashes before use: the libraries and the vocabulary now (small; no library is ever
  // dlopen'ed unchecked), the weights (3.45 GB at full size, ~2.5 s of SHA-256) on a second
  // thread while they are read into tensors; the constructor returns only when both agree.
  for (const auto& [file, digest] : m.sha256)
    if (file != m.weights_file) check_bundle_file(m, file);
  auto weights_hash = std::async(std::launch::async, [&m] { check_bundle_file(m, m.weights_file); });
  try {
    detail::check_bundle_device(m.device, dev);
    detail::ensure_device_runtime(dev);
    if (dev.device_type == kDLCPU) detail::check_cpu_precision(m.precision);
    impl_->tokenizer = std::make_unique<Tokenizer>(m.path(m.vocab_file));
    SafeTensors weights(m.path(m.weights_file));
    for (const auto& [name, spec] : m.components)
      impl_->components[name] = std::make_unique<Component>(m, spec, weights, dev);
  } catch (...) {
    weights_hash.get();  // a corrupt weights file explains a failure better than its symptom
    throw;
  }
  weights_hash.get();
}

Model::~Model() = default;

const Manifest& Model::manifest() const { return impl_->manifest; }
const std::map<std::string, double>& Model::timings() const { return impl_->timings; }

int Model::num_threads() const {
  auto f = detail::ffi::Function::GetGlobal("runtime.NumThreads");
  return f ? (*f)().cast<int>() : 1;
}

ImageState Model::encode(const Image& image) {
  const int S = impl_->manifest.image_size;
  std::vector<float> pixels;
  {
    detail::Timer t(impl_->timings, "preprocess");
    pixels = preprocess(image, S);
  }
  ImageState state;
  state.width_ = image.width;
  state.height_ = image.height;
  state.impl_ = std::make_shared<ImageState::Impl>();
  detail::Timer t(impl_->timings, "image_encoder");
  Tensor in = detail::tensor_from({1, 3, S, S}, kF32, pixels.data());
  // Once per image, before and after the encoder: the prompt components of the last
  // image must not hold their blocks while the encoder runs, nor the encoder its
  // blocks while the prompts run (each is ~1 GB). The prompts, run many times per
  // image, keep their pool between calls.
  detail::release_pooled_memory();
  state.impl_->feats = impl_->get("image_encoder").run({in});
  detail::release_pooled_memory();
  return state;
}

std::vector<Instance> Model::segment(const ImageState& image, const ConceptPrompt& prompt) {
  const Manifest& m = impl_->manifest;
  if (!image.impl_) throw Error("segment: the image was not encoded");
  const int W = image.width(), H = image.height();
  bool blank = prompt.text.find_first_not_of(" \t\r\n") == std::string::npos;
  if (blank && prompt.boxes.empty()) throw Error("empty prompt: give text and/or exemplar boxes");
  if (prompt.text.size() > kMaxTextBytes)
    throw Error("the text prompt has " + std::to_string(prompt.text.size()) + " bytes; the limit is " +
                std::to_string(kMaxTextBytes) + " (the model reads 30 tokens)");
  if (static_cast<int>(prompt.boxes.size()) > m.max_boxes)
    throw Error("at most " + std::to_string(m.max_boxes) + " exemplar boxes are supported, got " +
                std::to_string(prompt.boxes.size()));
  for (const Box& b : prompt.boxes) detail::check_box(b, W, H, "image");

  std::vector<int64_t> ids;
  {
    detail::Timer t(impl_->timings, "tokenize");
    // a box-only prompt uses the text "visual", as Sam3Processor.add_geometric_prompt does
    ids = impl_->tokenizer->encode(blank ? std::string("visual") : prompt.text, m.context_length);
  }
  std::vector<Tensor> text;
  {
    detail::Timer t(impl_->timings, "text_encoder");
    text = impl_->get("text_encoder").run(
        {detail::tensor_from({1, m.context_length}, kI64, ids.data())});
  }
  const int nb = m.max_boxes;
  std::vector<float> boxes(nb * 4, 0.f);
  std::vector<int64_t> labels(nb, 0);
  std::vector<uint8_t> pad(nb, 1);
  for (size_t i = 0; i < prompt.boxes.size(); ++i) {
    const Box& b = prompt.boxes[i];
    boxes[i * 4 + 0] = (b.x0 + b.x1) / 2 / W;
    boxes[i * 4 + 1] = (b.y0 + b.y1) / 2 / H;
    boxes[i * 4 + 2] = (b.x1 - b.x0) / W;
    boxes[i * 4 + 3] = (b.y1 - b.y0) / H;
    labels[i] = b.positive ? 1 : 0;
    pad[i] = 0;
  }
  const auto& f = image.impl_->feats;
  std::vector<Tensor> out;
  {
    detail::Timer t(impl_->timings, "grounding_head");
    out = impl_->get("grounding_head")
              .run({f[0], f[1], f[2], text[0], text[1],
                    detail::tensor_from({nb, 1, 4}, kF32, boxes.data()),
                    detail::tensor_from({nb, 1}, kI64, labels.data()),
                    detail::tensor_from({1, nb}, kBool, pad.data())});
  }
  detail::Timer t(impl_->timings, "postprocess");
  auto dets = select_detections(fdata(out[0]), fdata(out[1]), fdata(out[2])[0], fdata(out[3]),
                                m.num_queries, m.mask_size, H, W, prompt.threshold);
  std::vector<Instance> result;
  for (auto& d : dets) {
    Instance inst;
    inst.score = d.score;
    inst.box = d.box_xyxy;
    inst.width = W;
    inst.height = H;
    inst.mask = std::move(d.mask);
    result.push_back(std::move(inst));
  }
  return result;
}

std::vector<Instance> Model::segment_interactive(const ImageState& image,
                                                const InteractivePrompt& prompt) {
  const Manifest& m = impl_->manifest;
  if (!image.impl_) throw Error("segment_interactive: the image was not encoded");
  const int W = image.width(), H = image.height(), M = m.mask_size;
  const float sx = static_cast<float>(m.image_size) / W, sy = static_cast<float>(m.image_size) / H;
  // as SAM3InteractiveImagePredictor._predict: box corners first (labels 2, 3), then clicks
  std::vector<float> coords;
  std::vector<int32_t> labels;
  if (prompt.box) {
    detail::check_box(*prompt.box, W, H, "image");
    coords.insert(coords.end(), {prompt.box->x0 * sx, prompt.box->y0 * sy, prompt.box->x1 * sx,
                                 prompt.box->y1 * sy});
    labels.insert(labels.end(), {2, 3});
  }
  for (const Point& p : prompt.points) {
    detail::check_point(p, W, H, "image");
    coords.insert(coords.end(), {p.x * sx, p.y * sy});
    labels.push_back(p.positive ? 1 : 0);
  }
  const int n = static_cast<int>(labels.size());
  if (n == 0 || n > m.max_points)
    throw Error("interactive prompts need 1.." + std::to_string(m.max_points) +
                " points (a box counts as 2), got " + std::to_string(n));
  std::vector<float> mask_in(static_cast<size_t>(M) * M, 0.f);
  float has_mask = 0.f;
  const float add_no_mem_embed = 1.f;  // as predict_inst: features + no_mem_embed
  if (!prompt.mask_input.empty()) {
    if (prompt.mask_input.size() != mask_in.size())
      throw Error("mask_input must have " + std::to_string(M) + "x" + std::to_string(M) + " values");
    mask_in = prompt.mask_input;
    has_mask = 1.f;
  }
  const auto& f = image.impl_->feats;
  std::vector<Tensor> out;
  {
    detail::Timer t(impl_->timings, "interactive_decoder");
    out = impl_->get("interactive_decoder")
              .run({f[5], f[3], f[4],
                    detail::tensor_from({1, n, 2}, kF32, coords.data()),
                    detail::tensor_from({1, n}, kI32, labels.data()),
                    detail::tensor_from({1, 1, M, M}, kF32, mask_in.data()),
                    detail::tensor_from({1}, kF32, &has_mask),
                    detail::tensor_from({1}, kF32, &add_no_mem_embed)});
  }
  detail::Timer t(impl_->timings, "postprocess");
  InteractiveResult r = best_interactive_mask(fdata(out[0]), fdata(out[1]), M, H, W,
                                              prompt.multimask, true, prompt.max_hole_area);
  Instance inst;
  inst.score = r.iou;
  inst.width = W;
  inst.height = H;
  inst.mask = std::move(r.mask);
  inst.box = mask_bbox_xyxy(inst.mask.data(), H, W);
  inst.low_res_logits = std::move(r.low_res_logits);
  return {std::move(inst)};
}

}  // namespace sam3
