#include "video/tracker_state.h"

#include <algorithm>
#include <cstdlib>

#include "sam3/error.h"
#include "sam3/postprocess.h"
#include "sam3/video_postprocess.h"

namespace sam3 {
namespace video {
namespace {

constexpr float kPrevMaskClamp = 32.f;  // add_new_points_or_box clamps fed-back logits

std::vector<float> upsample(const std::vector<float>& low, int m, int s) {
  return resize_bilinear(low.data(), m, m, s, s);
}

// pred_masks_video_res of an add_mask output: +-1024 where the mask is (not) set
std::vector<float> video_res_logits(const std::vector<uint8_t>& mask) {
  std::vector<float> v(mask.size());
  for (std::size_t i = 0; i < mask.size(); ++i) v[i] = mask[i] ? -kNoObjScore : kNoObjScore;
  return v;
}

}  // namespace

TrackerState::TrackerState(const TrackerModel& model, int num_frames, int video_w, int video_h,
                           FeatureFn features, VideoMemory policy, SpillStore* spill)
    : model_(model), cfg_(model.config()), num_frames_(num_frames), width_(video_w), height_(video_h),
      features_(std::move(features)), policy_(policy), spill_(spill) {}

const std::vector<uint16_t>* TrackerState::memory_of(ObjFrame& o) const {
  if (o.maskmem.empty() && o.maskmem_spilled >= 0) {
    o.maskmem.resize(o.maskmem_size);
    spill_->get(o.maskmem_spilled, o.maskmem.data(), o.maskmem_size * sizeof(uint16_t));
  }
  return o.maskmem.empty() ? nullptr : &o.maskmem;
}

const std::vector<float>* TrackerState::logits_of(ObjFrame& o) const {
  if (o.pred_masks.empty() && o.pred_masks_spilled >= 0) {
    o.pred_masks.resize(o.pred_masks_size);
    spill_->get(o.pred_masks_spilled, o.pred_masks.data(), o.pred_masks_size * sizeof(float));
  }
  return o.pred_masks.empty() ? nullptr : &o.pred_masks;
}

bool TrackerState::has_inputs() const {
  for (std::size_t i = 0; i < obj_ids_.size(); ++i)
    if (!point_inputs_[i].empty() || !mask_inputs_[i].empty()) return true;
  return false;
}

int TrackerState::first_cond_frame() const {
  return output_.cond.empty() ? -1 : output_.cond.begin()->first;
}

int TrackerState::first_prompt_frame() const {
  int first = -1;
  for (const auto& p : point_inputs_)
    if (!p.empty() && (first < 0 || p.begin()->first < first)) first = p.begin()->first;
  for (const auto& m : mask_inputs_)
    if (!m.empty() && (first < 0 || m.begin()->first < first)) first = m.begin()->first;
  return first;
}

int TrackerState::obj_id_to_idx(int obj_id) {
  auto it = obj_index_.find(obj_id);
  if (it != obj_index_.end()) return it->second;
  if (tracking_has_started_)  // the session puts such objects in a new state
    throw Error("cannot add object " + std::to_string(obj_id) + " to a state that is tracking");
  const int idx = static_cast<int>(obj_ids_.size());
  obj_index_[obj_id] = idx;
  obj_ids_.push_back(obj_id);
  point_inputs_.emplace_back();
  mask_inputs_.emplace_back();
  per_obj_.emplace_back();
  temp_.emplace_back();
  return idx;
}

bool TrackerState::use_multimask(bool is_init_cond_frame, const PointInputs* points) const {
  const int n = points ? static_cast<int>(points->labels.size()) : 0;
  return cfg_.multimask_output_in_sam && (is_init_cond_frame || cfg_.multimask_output_for_tracking) &&
         cfg_.multimask_min_pt_num <= n && n <= cfg_.multimask_max_pt_num;
}

bool TrackerState::clear_non_cond_mem() const {
  return cfg_.clear_non_cond_mem_around_input &&
         (cfg_.clear_non_cond_mem_for_multi_obj || obj_ids_.size() <= 1);
}

// Sam3TrackerPredictor._run_single_frame_inference for one object, when a prompt is
// added: no memory (use_prev_mem_frame=False) and no memory encoder.
ObjFramePtr TrackerState::run_prompt(int frame, bool is_init_cond_frame, const PointInputs* points,
                                     const std::vector<float>* mask_inputs,
                                     const std::vector<float>* prev_mask_logits) {
  std::shared_ptr<const FrameFeatures> f = features_(frame);
  HeadsOutput h = mask_inputs
                      ? model_.mask_as_output(*f, *mask_inputs)
                      : model_.heads(f->embed, true, *f, points->coords, points->labels, prev_mask_logits,
                                     use_multimask(is_init_cond_frame, points));
  auto out = std::make_shared<ObjFrame>();
  out->pred_masks = std::move(h.low_res);
  out->obj_ptr = std::move(h.obj_ptr);
  out->object_score = h.object_score;
  out->iou_score = h.iou_score;
  return out;
}

void TrackerState::add_new_points(int frame, int obj_id, PointInputs points) {
  const int idx = obj_id_to_idx(obj_id);
  // limit to max_point_num_in_prompt_enc: the first half and the last half
  const int n = static_cast<int>(points.labels.size()), lim = cfg_.max_point_num_in_prompt_enc;
  if (lim > 0 && n > lim) {
    const int first = lim / 2, last = lim - first;
    PointInputs kept;
    for (int i = 0; i < n; ++i) {
      if (i < first || i >= n - last) {
        kept.coords.insert(kept.coords.end(), {points.coords[2 * i], points.coords[2 * i + 1]});
        kept.labels.push_back(points.labels[i]);
      }
    }
    points = std::move(kept);
  }
  point_inputs_[idx][frame] = points;
  mask_inputs_[idx].erase(frame);
  const bool is_init = !frames_already_tracked_.count(frame);
  // (tracking direction matters only with use_prev_mem_frame, which the predictor leaves off)
  const bool is_cond = is_init || cfg_.add_all_frames_to_correct_as_cond;
  auto& temp = is_cond ? temp_[idx].cond : temp_[idx].non_cond;
  // the object's last logits on this frame go back in as a mask prompt
  std::vector<float> prev;
  if (cfg_.iter_use_prev_mask_pred) {
    ObjFramePtr p;
    if (temp.count(frame)) p = temp.at(frame);
    else if (per_obj_[idx].cond.count(frame)) p = per_obj_[idx].cond.at(frame);
    else if (per_obj_[idx].non_cond.count(frame)) p = per_obj_[idx].non_cond.at(frame);
    if (p && logits_of(*p)) {
      prev = p->pred_masks;
      for (float& v : prev) v = std::min(std::max(v, -kPrevMaskClamp), kPrevMaskClamp);
    }
  }
  temp[frame] = run_prompt(frame, is_init, &point_inputs_[idx][frame], nullptr,
                           prev.empty() ? nullptr : &prev);
  last_prompt_cond_ = is_cond;
}

void TrackerState::add_new_mask(int frame, int obj_id, const std::vector<uint8_t>& mask_video_res) {
  add_new_mask(frame, obj_id, mask_video_res, height_, width_);
}

void TrackerState::add_new_mask(int frame, int obj_id, const std::vector<uint8_t>& mask, int mh, int mw) {
  if (mask.size() != static_cast<std::size_t>(mh) * mw) throw Error("internal: mask size");
  const int idx = obj_id_to_idx(obj_id);
  const int MI = cfg_.input_mask_size;
  std::vector<float> m(mask.size());
  for (std::size_t i = 0; i < m.size(); ++i) m[i] = mask[i] ? 1.f : 0.f;
  std::vector<float> mask_inputs = (mh == MI && mw == MI) ? m : resize_bilinear_aa(m.data(), mh, mw, MI, MI);
  std::vector<uint8_t> binary(static_cast<std::size_t>(height_) * width_);
  if (mh == height_ && mw == width_) {
    for (std::size_t i = 0; i < binary.size(); ++i) binary[i] = mask[i] ? 1 : 0;
  } else {
    const std::vector<float> v = resize_bilinear_aa(m.data(), mh, mw, height_, width_);
    for (std::size_t i = 0; i < binary.size(); ++i) binary[i] = v[i] > 0.5f ? 1 : 0;
  }
  mask_inputs_[idx][frame] = binary;
  point_inputs_[idx].erase(frame);
  const bool is_init = !frames_already_tracked_.count(frame);
  const bool is_cond = is_init || cfg_.add_all_frames_to_correct_as_cond;
  last_prompt_cond_ = is_cond;
  ObjFramePtr out = run_prompt(frame, is_init, nullptr, &mask_inputs, nullptr);
  out->pred_masks.clear();
  out->video_res_mask = binary;
  (is_cond ? temp_[idx].cond : temp_[idx].non_cond)[frame] = out;
  // this mask takes its pixels from other objects' masks given on the same frame
  for (std::size_t j = 0; j < temp_.size(); ++j) {
    if (static_cast<int>(j) == idx) continue;
    auto& t = is_cond ? temp_[j].cond : temp_[j].non_cond;
    auto it = t.find(frame);
    if (it == t.end() || it->second->video_res_mask.empty()) continue;
    for (std::size_t p = 0; p < binary.size(); ++p)
      if (binary[p]) it->second->video_res_mask[p] = 0;
  }
}

// _consolidate_temp_output_across_obj
FrameOutPtr TrackerState::consolidate(int frame, bool is_cond, bool run_mem_encoder, bool at_video_res) {
  const int M = cfg_.low_res_mask_size;
  const int h = at_video_res ? height_ : M, w = at_video_res ? width_ : M;
  const std::size_t plane = static_cast<std::size_t>(h) * w;
  auto cons = std::make_shared<FrameOut>();
  cons->consolidated = true;
  const int C = cfg_.hidden_dim;
  std::shared_ptr<const FrameFeatures> f;
  for (std::size_t i = 0; i < obj_ids_.size(); ++i) {
    auto o = std::make_shared<ObjFrame>();
    o->pred_masks.assign(plane, kNoObjScore);
    o->obj_ptr.assign(C, kNoObjScore);
    o->object_score = 10.f;  // missing objects count as present (predict_masks' default)
    o->iou_score = 0.f;
    cons->objs.push_back(o);
    auto& temp = is_cond ? temp_[i].cond : temp_[i].non_cond;
    ObjFramePtr out;
    if (temp.count(frame)) out = temp.at(frame);
    else if (per_obj_[i].cond.count(frame)) out = per_obj_[i].cond.at(frame);
    else if (per_obj_[i].non_cond.count(frame)) out = per_obj_[i].non_cond.at(frame);
    if (!out) {
      if (run_mem_encoder) {  // _get_empty_mask_ptr: an empty mask's pointer is no_obj_ptr
        if (!f) f = features_(frame);
        o->obj_ptr = model_.no_obj_ptr(*f);
      }
      continue;
    }
    if (!out->video_res_mask.empty()) {
      const std::vector<float> v = video_res_logits(out->video_res_mask);
      o->pred_masks = (h == height_ && w == width_) ? v : resize_bilinear_aa(v.data(), height_, width_, h, w);
    } else if (const std::vector<float>* low = logits_of(*out)) {
      o->pred_masks = (h == M && w == M) ? *low : resize_bilinear(low->data(), M, M, h, w);
    }  // else released by VideoMemory::Drop: left as "no object"
    o->obj_ptr = out->obj_ptr;
    o->object_score = out->object_score;
    o->iou_score = out->iou_score;
  }
  if (run_mem_encoder) {
    // non-overlapping masks at input resolution, then the memory of each from its
    // binarised mask (these frames are what the user interacted with)
    const int S = cfg_.image_size;
    std::vector<std::vector<float>> high(obj_ids_.size());
    std::vector<float*> planes;
    for (std::size_t i = 0; i < high.size(); ++i) {
      high[i] = upsample(cons->objs[i]->pred_masks, M, S);
      planes.push_back(high[i].data());
    }
    apply_non_overlapping_constraints(planes, static_cast<std::size_t>(S) * S);
    if (!f) f = features_(frame);
    for (std::size_t i = 0; i < high.size(); ++i)
      cons->objs[i]->maskmem = model_.encode_memory(*f, high[i], cons->objs[i]->object_score, true);
  }
  return cons;
}

void TrackerState::add_output_per_object(int frame, const FrameOutPtr& out, bool cond) {
  for (std::size_t i = 0; i < obj_ids_.size(); ++i)
    (cond ? per_obj_[i].cond : per_obj_[i].non_cond)[frame] = out->objs[i];
}

void TrackerState::clear_non_cond_mem_around_input(int frame) {
  const int r = cfg_.memory_temporal_stride_for_eval, span = r * cfg_.num_maskmem;
  for (auto& d : per_obj_)
    for (int t = frame - span; t <= frame + span; ++t) d.non_cond.erase(t);
}

void TrackerState::propagate_in_video_preflight() {
  tracking_has_started_ = true;
  for (bool is_cond : {false, true}) {
    std::set<int> frames;
    for (auto& t : temp_)
      for (const auto& kv : (is_cond ? t.cond : t.non_cond)) frames.insert(kv.first);
    (is_cond ? consolidated_cond_ : consolidated_non_cond_).insert(frames.begin(), frames.end());
    for (int frame : frames) {
      FrameOutPtr cons = consolidate(frame, is_cond, true, false);
      (is_cond ? output_.cond : output_.non_cond)[frame] = cons;
      add_output_per_object(frame, cons, is_cond);
      if (clear_non_cond_mem()) clear_non_cond_mem_around_input(frame);
    }
    for (auto& t : temp_) (is_cond ? t.cond : t.non_cond).clear();
  }
  // an output added to the conditioning frames replaces one on the same frame
  for (const auto& kv : output_.cond) output_.non_cond.erase(kv.first);
  for (auto& d : per_obj_)
    for (const auto& kv : d.cond) d.non_cond.erase(kv.first);
  for (int f : consolidated_cond_) consolidated_non_cond_.erase(f);
}

StepOutput TrackerState::track_frame(int frame, bool reverse, bool run_mem_encoder) {
  if (output_.cond.empty()) throw Error("no prompts to track: add points, a box or a mask first");
  FrameOutPtr cur;
  bool cond = false;
  if (consolidated_cond_.count(frame)) {
    cur = output_.cond.at(frame);
    cond = true;
    if (clear_non_cond_mem()) clear_non_cond_mem_around_input(frame);
  } else if (consolidated_non_cond_.count(frame)) {
    cur = output_.non_cond.at(frame);
  } else {
    // the batched _run_single_frame_inference with memory, multimask, memory encoder
    const MemoryPlan plan = plan_memory(output_, frame, reverse, num_frames_, cfg_);
    std::shared_ptr<const FrameFeatures> f = features_(frame);
    cur = std::make_shared<FrameOut>();
    const int M = cfg_.low_res_mask_size, S = cfg_.image_size;
    for (std::size_t i = 0; i < obj_ids_.size(); ++i) {
      MemoryInput in;
      for (const auto& m : plan.memories) {
        const FrameOutPtr& src = m.cond ? output_.cond.at(m.frame) : output_.non_cond.at(m.frame);
        const std::vector<uint16_t>* mem = memory_of(*src->objs[i]);
        if (!mem) {
          if (policy_ == VideoMemory::Drop) continue;  // released: attend without it
          throw Error("internal: the spatial memory of frame " + std::to_string(m.frame) + " is missing");
        }
        in.memories.push_back(mem);
        in.tpos.push_back(m.tpos);
      }
      for (const auto& p : plan.pointers) {
        const FrameOutPtr& src = p.cond ? output_.cond.at(p.frame) : output_.non_cond.at(p.frame);
        in.ptrs.push_back(&src->objs[i]->obj_ptr);
        in.ptr_pos.push_back(p.pos);
      }
      const Tensor pix = model_.attend(*f, in);
      HeadsOutput hd = model_.heads(pix, false, *f, {}, {}, nullptr, use_multimask(false, nullptr));
      auto o = std::make_shared<ObjFrame>();
      if (run_mem_encoder) o->maskmem = model_.encode_memory(*f, upsample(hd.low_res, M, S), hd.object_score, false);
      o->pred_masks = std::move(hd.low_res);
      o->obj_ptr = std::move(hd.obj_ptr);
      o->object_score = hd.object_score;
      o->iou_score = hd.iou_score;
      cur->objs.push_back(std::move(o));
    }
    if (cfg_.use_memory_selection) {
      cur->has_eff = true;
      cur->eff = mem_score(cur->objs, false);
    }
    output_.non_cond[frame] = cur;
  }
  add_output_per_object(frame, cur, cond);
  frames_already_tracked_[frame] = reverse;
  for (auto& o : cur->objs) logits_of(*o);  // the caller reads them
  return StepOutput{obj_ids_, cur->objs};
}

void TrackerState::set_frame_memory(int frame, std::vector<std::vector<uint16_t>> memories) {
  for (std::map<int, FrameOutPtr>* d : {&output_.cond, &output_.non_cond}) {
    auto it = d->find(frame);
    if (it == d->end()) continue;
    if (memories.size() != it->second->objs.size()) throw Error("internal: memories per object");
    for (std::size_t i = 0; i < memories.size(); ++i) {
      ObjFrame& o = *it->second->objs[i];
      o.maskmem = std::move(memories[i]);
      o.maskmem_spilled = -1;  // a spilled copy is stale now
    }
    return;
  }
}

void TrackerState::reset_tracking_results() {
  for (auto& p : point_inputs_) p.clear();
  for (auto& m : mask_inputs_) m.clear();
  for (auto& d : per_obj_) d = ObjDict{};
  for (auto& d : temp_) d = ObjDict{};
  output_ = OutputDict{};
  consolidated_cond_.clear();
  consolidated_non_cond_.clear();
  tracking_has_started_ = false;
  frames_already_tracked_.clear();
}

void TrackerState::clear_all_points_in_video() {
  reset_tracking_results();
  obj_ids_.clear();
  obj_index_.clear();
  point_inputs_.clear();
  mask_inputs_.clear();
  per_obj_.clear();
  temp_.clear();
}

void TrackerState::clear_all_points_in_frame(int frame, int obj_id) {
  const int idx = obj_index_.at(obj_id);
  point_inputs_[idx].erase(frame);
  mask_inputs_[idx].erase(frame);
  temp_[idx].cond.erase(frame);
  temp_[idx].non_cond.erase(frame);
  bool frame_has_input = false;
  for (std::size_t i = 0; i < obj_ids_.size(); ++i)
    frame_has_input = frame_has_input || point_inputs_[i].count(frame) || mask_inputs_[i].count(frame);
  if (frame_has_input) return;
  consolidated_cond_.erase(frame);
  consolidated_non_cond_.erase(frame);
  auto it = output_.cond.find(frame);
  if (it != output_.cond.end()) {  // no longer a conditioning frame: keep it as a tracked one
    output_.non_cond[frame] = it->second;
    output_.cond.erase(it);
    frames_already_tracked_.erase(frame);
  }
  for (auto& d : per_obj_) {
    auto jt = d.cond.find(frame);
    if (jt == d.cond.end()) continue;
    d.non_cond[frame] = jt->second;
    d.cond.erase(jt);
  }
  if (output_.cond.empty()) reset_tracking_results();
}

void TrackerState::remove_object(int obj_id) {
  auto found = obj_index_.find(obj_id);
  if (found == obj_index_.end()) throw Error("no object " + std::to_string(obj_id));
  if (obj_ids_.size() == 1) {
    clear_all_points_in_video();
    return;
  }
  const int idx = found->second;
  std::set<int> input_frames;
  for (const auto& kv : point_inputs_[idx]) input_frames.insert(kv.first);
  for (const auto& kv : mask_inputs_[idx]) input_frames.insert(kv.first);
  for (int frame : input_frames) clear_all_points_in_frame(frame, obj_id);
  // drop the object's index everywhere; the batched outputs lose its slice
  obj_ids_.erase(obj_ids_.begin() + idx);
  obj_index_.clear();
  for (std::size_t i = 0; i < obj_ids_.size(); ++i) obj_index_[obj_ids_[i]] = static_cast<int>(i);
  point_inputs_.erase(point_inputs_.begin() + idx);
  mask_inputs_.erase(mask_inputs_.begin() + idx);
  per_obj_.erase(per_obj_.begin() + idx);
  temp_.erase(temp_.begin() + idx);
  for (bool cond : {true, false}) {
    for (auto& kv : (cond ? output_.cond : output_.non_cond)) {
      FrameOut& out = *kv.second;
      out.objs.erase(out.objs.begin() + idx);
      if (cfg_.use_memory_selection) {  // recomputed for every output, as _slice_state does
        out.has_eff = true;
        out.eff = mem_score(out.objs, out.consolidated);
      }
      add_output_per_object(kv.first, kv.second, cond);
    }
  }
}

void TrackerState::clear_detector_cond_frames(int obj_id, int refined_frame, int window) {
  const int idx = obj_index_.at(obj_id);
  std::vector<int> frames;
  for (const auto& kv : mask_inputs_[idx])
    if (!point_inputs_[idx].count(kv.first) && std::abs(kv.first - refined_frame) <= window) frames.push_back(kv.first);
  const std::vector<int> ids = obj_ids_;
  for (int f : frames)
    for (int id : ids) clear_all_points_in_frame(f, id);
}

std::vector<std::vector<float>> TrackerState::video_res_masks(int frame) {
  FrameOutPtr cons = consolidate(frame, last_prompt_cond_, false, true);
  std::vector<std::vector<float>> masks;
  for (auto& o : cons->objs) masks.push_back(std::move(o->pred_masks));
  return masks;
}

std::size_t TrackerState::bytes() const {
  std::set<const ObjFrame*> seen;
  std::size_t b = 0;
  auto add = [&](const ObjFramePtr& o) {
    if (o && seen.insert(o.get()).second) b += o->bytes();
  };
  for (const auto* d : {&output_.cond, &output_.non_cond})
    for (const auto& kv : *d)
      for (const auto& o : kv.second->objs) add(o);
  for (const auto* v : {&per_obj_, &temp_})
    for (const auto& d : *v)
      for (const auto* m : {&d.cond, &d.non_cond})
        for (const auto& kv : *m) add(kv.second);
  return b + output_.non_cond.size() * sizeof(FrameOut);
}

std::size_t TrackerState::frames_with_memory() const {
  std::size_t n = 0;
  for (const auto* d : {&output_.cond, &output_.non_cond})
    for (const auto& kv : *d)
      n += !kv.second->objs.empty() && !kv.second->objs[0]->maskmem.empty();
  return n;
}

std::set<int> TrackerState::memory_frames_for(int frame, bool reverse) const {
  std::set<int> frames;
  if (frame < 0 || frame >= num_frames_ || output_.cond.empty()) return frames;
  for (const auto& m : plan_memory(output_, frame, reverse, num_frames_, cfg_).memories)
    if (!m.cond) frames.insert(m.frame);
  return frames;
}

void TrackerState::release_except(const std::set<int>& keep) {
  if (policy_ == VideoMemory::KeepAll) return;
  auto release = [&](ObjFrame& o) {
    if (!o.maskmem.empty()) {
      if (policy_ == VideoMemory::Spill && o.maskmem_spilled < 0) {
        o.maskmem_size = o.maskmem.size();
        o.maskmem_spilled = spill_->put(o.maskmem.data(), o.maskmem.size() * sizeof(uint16_t));
      }
      std::vector<uint16_t>().swap(o.maskmem);
    }
    if (!o.pred_masks.empty()) {
      if (policy_ == VideoMemory::Spill && o.pred_masks_spilled < 0) {
        o.pred_masks_size = o.pred_masks.size();
        o.pred_masks_spilled = spill_->put(o.pred_masks.data(), o.pred_masks.size() * sizeof(float));
      }
      std::vector<float>().swap(o.pred_masks);
    }
  };
  // conditioning frames and prompts' temporary outputs stay; tracked frames go
  for (auto& kv : output_.non_cond)
    if (!keep.count(kv.first))
      for (auto& o : kv.second->objs) release(*o);
  for (auto& d : per_obj_)
    for (auto& kv : d.non_cond)
      if (!keep.count(kv.first)) release(*kv.second);
}

}  // namespace video
}  // namespace sam3
