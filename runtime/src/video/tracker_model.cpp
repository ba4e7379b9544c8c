#include "video/tracker_model.h"

#include <algorithm>
#include <cmath>

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

namespace {

Tensor scalar(float v) { return detail::tensor_from({1}, kF32, &v); }

}  // namespace

std::size_t FrameFeatures::bytes() const {
  std::size_t n = detail::numel(hr0) + detail::numel(hr1) + detail::numel(embed);
  for (const Tensor& t : detector) n += detail::numel(t);
  return n * sizeof(float);
}

TrackerModel::TrackerModel(const Manifest& manifest,
                           const std::map<std::string, const detail::Component*>& components,
                           std::map<std::string, double>& timings)
    : cfg_(manifest.tracker), image_size_(manifest.image_size), grid_(manifest.mask_size / 4),
      components_(components), timings_(timings) {
  for (const char* name : {"image_encoder", "interactive_decoder", "memory_encoder",
                           "memory_attention", "mask_downsample"})
    if (!components_.count(name) || !components_.at(name))
      throw Error(std::string("this bundle has no ") + name + " component; video tracking needs a "
                  "bundle compiled with it (recompile the bundle)");
}

const detail::Component& TrackerModel::get(const char* name) const { return *components_.at(name); }

FrameFeatures TrackerModel::encode_frame(const Image& frame, bool with_detector) const {
  std::vector<float> pixels;
  {
    detail::Timer t(timings_, "preprocess", true);
    pixels = preprocess_video_frame(frame, image_size_);
  }
  detail::Timer t(timings_, "image_encoder", true);
  Tensor in = detail::tensor_from({1, 3, image_size_, image_size_}, kF32, pixels.data());
  detail::release_pooled_memory();  // as Model::encode: the encoder's blocks are not kept
  std::vector<Tensor> out = get("image_encoder").run({in});
  detail::release_pooled_memory();
  FrameFeatures f{out[3], out[4], out[5], {}};
  if (with_detector) f.detector = {out[0], out[1], out[2]};
  return f;
}

HeadsOutput TrackerModel::heads(const Tensor& pix, bool no_mem, const FrameFeatures& f,
                                const std::vector<float>& coords, const std::vector<int32_t>& labels,
                                const std::vector<float>* mask_prompt, bool multimask) const {
  const int M = cfg_.low_res_mask_size;
  const std::size_t plane = static_cast<std::size_t>(M) * M;
  std::vector<float> c = coords;
  std::vector<int32_t> l = labels;
  if (l.empty()) {  // no points: one (0, 0) point labelled -1 (_forward_sam_heads)
    c = {0.f, 0.f};
    l = {-1};
  }
  const int n = static_cast<int>(l.size());
  std::vector<float> mask(plane, 0.f);
  if (mask_prompt) mask = *mask_prompt;
  std::vector<Tensor> out;
  {
    detail::Timer t(timings_, "sam_heads", true);
    out = get("interactive_decoder")
              .run({pix, f.hr0, f.hr1, detail::tensor_from({1, n, 2}, kF32, c.data()),
                    detail::tensor_from({1, n}, kI32, l.data()),
                    detail::tensor_from({1, 1, M, M}, kF32, mask.data()), scalar(mask_prompt ? 1.f : 0.f),
                    scalar(no_mem ? 1.f : 0.f)});
  }
  const float* masks = fdata(out[0]);
  const float* iou = fdata(out[1]);
  const float obj = fdata(out[2])[0];
  const float* ptrs = fdata(out[3]);
  const int C = cfg_.hidden_dim;
  if (no_obj_ptr_.empty()) no_obj_ptr_.assign(fdata(out[4]), fdata(out[4]) + C);

  // MaskDecoder.forward + _forward_sam_heads: which mask, which IoUs, which token
  auto best_multimask = [&] {
    int b = 1;
    for (int k = 2; k <= 3; ++k)
      if (iou[k] > iou[b]) b = k;
    return b;
  };
  int mask_idx = 0, token_idx = 0;
  float iou_score;
  if (multimask) {
    mask_idx = best_multimask();
    token_idx = cfg_.use_multimask_token_for_obj_ptr ? mask_idx : 0;
    iou_score = std::max({iou[1], iou[2], iou[3]});
  } else {
    if (cfg_.dynamic_multimask_via_stability &&
        !(stability_score(masks, static_cast<int>(plane), cfg_.dynamic_multimask_stability_delta) >=
          cfg_.dynamic_multimask_stability_thresh))
      mask_idx = best_multimask();
    iou_score = iou[mask_idx];
  }
  HeadsOutput r;
  r.object_score = obj;
  r.iou_score = iou_score;
  if (obj > 0.f)
    r.low_res.assign(masks + plane * mask_idx, masks + plane * (mask_idx + 1));
  else
    r.low_res.assign(plane, kNoObjScore);
  r.obj_ptr.assign(ptrs + static_cast<std::size_t>(token_idx) * C, ptrs + static_cast<std::size_t>(token_idx + 1) * C);
  return r;
}

HeadsOutput TrackerModel::mask_as_output(const FrameFeatures& f, const std::vector<float>& mask) const {
  const int MI = cfg_.input_mask_size;
  std::vector<Tensor> down;
  {
    detail::Timer t(timings_, "mask_downsample", true);
    down = get("mask_downsample").run({detail::tensor_from({1, 1, MI, MI}, kF32, mask.data())});
  }
  const std::size_t plane = detail::numel(down[0]);
  std::vector<float> prompt(fdata(down[0]), fdata(down[0]) + plane);
  // the pointer from the SAM heads on the raw features, single-mask output
  HeadsOutput r = heads(f.embed, false, f, {}, {}, &prompt, false);
  // the mask itself decides whether the object is there: object score +-10, and the
  // pointer of an empty mask is no_obj_ptr
  const bool appearing = std::any_of(mask.begin(), mask.end(), [](float v) { return v > 0.f; });
  if (!appearing) r.obj_ptr = no_obj_ptr(f);
  r.object_score = appearing ? 10.f : -10.f;
  r.iou_score = 1.f;
  r.low_res.clear();  // the predictor keeps the mask at video resolution instead
  return r;
}

const std::vector<float>& TrackerModel::no_obj_ptr(const FrameFeatures& f) const {
  if (no_obj_ptr_.empty()) heads(f.embed, false, f, {}, {}, nullptr, false);
  return no_obj_ptr_;
}

std::vector<uint16_t> TrackerModel::encode_memory(const FrameFeatures& f, const std::vector<float>& high_res,
                                                  float object_score, bool binarize, int size) const {
  const int S = size > 0 ? size : image_size_, MI = cfg_.input_mask_size;
  if (high_res.size() != static_cast<std::size_t>(S) * S) throw Error("internal: memory mask size");
  std::vector<float> m(high_res.size());
  {
    detail::Timer t(timings_, "memory_mask", true);
    for (std::size_t i = 0; i < m.size(); ++i) {
      const float p = binarize ? (high_res[i] > 0.f ? 1.f : 0.f) : sigmoid(high_res[i]);
      m[i] = p * cfg_.sigmoid_scale_for_mem_enc + cfg_.sigmoid_bias_for_mem_enc;
    }
    if (S != MI) m = resize_bilinear_aa(m.data(), S, S, MI, MI);  // SimpleMaskDownSampler
  }
  detail::Timer t(timings_, "memory_encoder", true);
  std::vector<Tensor> out = get("memory_encoder")
                                .run({f.embed, detail::tensor_from({1, 1, MI, MI}, kF32, m.data()),
                                      detail::tensor_from({1, 1}, kF32, &object_score)});
  const float* v = fdata(out[0]);
  std::vector<uint16_t> mem(detail::numel(out[0]));
  for (std::size_t i = 0; i < mem.size(); ++i) mem[i] = float_to_bf16(v[i]);
  return mem;
}

Tensor TrackerModel::attend(const FrameFeatures& f, const MemoryInput& in) const {
  const int Cm = cfg_.mem_dim, C = cfg_.hidden_dim, P = cfg_.pointer_slots;
  const int nm = static_cast<int>(in.memories.size());
  if (nm < 1 || nm > cfg_.max_memories || in.ptrs.size() > static_cast<std::size_t>(cfg_.max_pointers) ||
      in.tpos.size() != in.memories.size() || in.ptr_pos.size() != in.ptrs.size())
    throw Error("memory attention: " + std::to_string(nm) + " memories and " +
                std::to_string(in.ptrs.size()) + " pointers are out of the compiled range");
  const std::size_t per = static_cast<std::size_t>(Cm) * grid_ * grid_;
  std::vector<float> mem(per * nm);
  for (int i = 0; i < nm; ++i) {
    const std::vector<uint16_t>& m = *in.memories[i];
    if (m.size() != per) throw Error("memory attention: a stored memory has the wrong size");
    for (std::size_t k = 0; k < per; ++k) mem[i * per + k] = bf16_to_float(m[k]);
    // the compiled `take` does not bounds-check its index
    if (in.tpos[i] < 0 || in.tpos[i] >= cfg_.num_maskmem) throw Error("memory attention: bad slot");
  }
  std::vector<float> ptrs(static_cast<std::size_t>(P) * C, 0.f), pos(P, 0.f), valid(P, 0.f);
  for (std::size_t i = 0; i < in.ptrs.size(); ++i) {
    std::copy(in.ptrs[i]->begin(), in.ptrs[i]->end(), ptrs.begin() + i * C);
    pos[i] = in.ptr_pos[i];
    valid[i] = 1.f;
  }
  detail::Timer t(timings_, "memory_attention", true);
  std::vector<Tensor> out = get("memory_attention")
                                .run({f.embed, detail::tensor_from({nm, Cm, grid_, grid_}, kF32, mem.data()),
                                      detail::tensor_from({nm}, kI64, in.tpos.data()),
                                      detail::tensor_from({P, C}, kF32, ptrs.data()),
                                      detail::tensor_from({P}, kF32, pos.data()),
                                      detail::tensor_from({P}, kF32, valid.data())});
  return out[0];
}

}  // namespace video
}  // namespace sam3
