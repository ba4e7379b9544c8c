#include "video/concept_tracker.h"

#include <algorithm>
#include <numeric>

#include "model_impl.h"
#include "sam3/error.h"
#include "sam3/postprocess.h"
#include "sam3/rle.h"
#include "sam3/video_postprocess.h"

namespace sam3 {
namespace video {
namespace {

constexpr float kReconditionMinLogit = 0.8f;  // _recondition_masklets' HIGH_CONF_THRESH
constexpr float kRemovedScore = -1e4f;        // score of an object hotstart removed
constexpr float kBoundaryMargin = 0.025f;     // _suppress_detections_close_to_boundary

PlannerConfig planner_config(const DetectorConfig& c) {
  PlannerConfig p;
  p.assoc_iou_thresh = c.assoc_iou_thresh;
  p.trk_assoc_iou_thresh = c.trk_assoc_iou_thresh;
  p.new_det_thresh = c.new_det_thresh;
  p.hotstart_delay = c.hotstart_delay;
  p.hotstart_unmatch_thresh = c.hotstart_unmatch_thresh;
  p.hotstart_dup_thresh = c.hotstart_dup_thresh;
  p.init_trk_keep_alive = c.init_trk_keep_alive;
  p.max_trk_keep_alive = c.max_trk_keep_alive;
  p.min_trk_keep_alive = c.min_trk_keep_alive;
  p.suppress_unmatched_only_within_hotstart = c.suppress_unmatched_only_within_hotstart;
  p.decrease_trk_keep_alive_for_empty_masklets = c.decrease_trk_keep_alive_for_empty_masklets;
  return p;
}

bool any_positive(const std::vector<float>& v) {
  return std::any_of(v.begin(), v.end(), [](float x) { return x > 0.f; });
}

// low-res logits (m x m) bilinear to h x w, > 0
std::vector<uint8_t> binary_at(const std::vector<float>& low, int m, int h, int w) {
  const std::vector<float> up = resize_bilinear(low.data(), m, m, h, w);
  std::vector<uint8_t> b(up.size());
  for (std::size_t i = 0; i < up.size(); ++i) b[i] = up[i] > 0.f ? 1 : 0;
  return b;
}

// sam3_tracker_utils.mask_to_box of one low-res plane (inclusive max), normalised by its size,
// against a detection box (normalised xyxy): fast_diag_box_iou
float mask_box_iou(const std::vector<float>& mask, int m, const std::array<float, 4>& det) {
  int x0 = m, y0 = m, x1 = -1, y1 = -1;
  for (int y = 0; y < m; ++y)
    for (int x = 0; x < m; ++x)
      if (mask[static_cast<std::size_t>(y) * m + x] > 0.f) {
        x0 = std::min(x0, x), x1 = std::max(x1, x), y0 = std::min(y0, y), y1 = std::max(y1, y);
      }
  const float t[4] = {static_cast<float>(x0) / m, static_cast<float>(y0) / m, static_cast<float>(x1) / m,
                      static_cast<float>(y1) / m};
  const float a1 = (det[2] - det[0]) * (det[3] - det[1]), a2 = (t[2] - t[0]) * (t[3] - t[1]);
  const float iw = std::max(0.f, std::min(det[2], t[2]) - std::max(det[0], t[0]));
  const float ih = std::max(0.f, std::min(det[3], t[3]) - std::max(det[1], t[1]));
  const float inter = iw * ih;
  return inter / (a1 + a2 - inter);
}

}  // namespace

ConceptTracker::ConceptTracker(const TrackerModel& tracker, Detector& detector, const DetectorConfig& cfg,
                               int num_frames, int width, int height, FeatureFn features, VideoMemory policy,
                               SpillStore* spill, std::map<std::string, double>& timings)
    : tracker_(tracker), detector_(detector), cfg_(cfg), pcfg_(planner_config(cfg)), num_frames_(num_frames),
      width_(width), height_(height), features_(std::move(features)), policy_(policy), spill_(spill),
      timings_(timings), has_outputs_(num_frames, 0) {
  if (cfg_.max_num_objects <= 0) cfg_.max_num_objects = 10000;  // as the official constructor does
  // the session's object limit (sam3/limits.h), applied the official way: the
  // lowest-scoring new detections beyond it are dropped (_drop_new_det_with_obj_limit)
  cfg_.max_num_objects = std::min(cfg_.max_num_objects, kMaxVideoObjects);
}

std::vector<int64_t> ConceptTracker::global_obj_ids() const {
  std::vector<int64_t> ids;
  for (const auto& s : states_)
    for (int id : s->obj_ids()) ids.push_back(id);
  return ids;
}

std::vector<int> ConceptTracker::object_ids() const {
  std::vector<int> ids;
  for (int64_t id : global_obj_ids()) ids.push_back(static_cast<int>(id));
  std::sort(ids.begin(), ids.end());
  return ids;
}

bool ConceptTracker::has_outputs() const {
  return std::any_of(has_outputs_.begin(), has_outputs_.end(), [](uint8_t v) { return v != 0; });
}

PackedMask ConceptTracker::pack(const std::vector<float>& low) const {
  const std::vector<uint8_t> b = binary_at(low, tracker_.mask_size(), height_, width_);
  return PackedMask{rle_encode(b.data(), height_, width_)};
}

Detections ConceptTracker::detect(const FrameFeatures& f, int frame, bool allow) {
  if (!hooks_.detections) {
    // a frame's detections depend on the frame and the prompt only: the official keeps
    // them per frame (its detector buffer), so revisiting the prompt's frame at the start
    // of a propagation does not run the grounding head again
    if (!allow) return Detections{};
    if (last_detections_frame_ != frame) {
      last_detections_ = detector_.detect(f, frame, true, cfg_);
      last_detections_frame_ = frame;
    }
    return last_detections_;
  }
  const Detections raw = hooks_.detections(frame);
  const int M = tracker_.mask_size();
  const std::size_t plane = static_cast<std::size_t>(M) * M;
  std::vector<float> flat;
  for (const auto& m : raw.masks) {
    if (m.size() != plane) throw Error("oracle: a detection mask is not " + std::to_string(M) + "x" + std::to_string(M));
    flat.insert(flat.end(), m.begin(), m.end());
  }
  std::vector<uint8_t> keep(raw.size(), 1);
  if (cfg_.det_nms_thresh > 0.f && raw.size())
    keep = nms_masks(raw.scores, flat.data(), M, M, cfg_.score_threshold_detection, cfg_.det_nms_thresh);
  Detections d;
  if (!allow) return d;
  for (std::size_t i = 0; i < raw.size(); ++i) {
    if (!keep[i] || !(raw.scores[i] > cfg_.score_threshold_detection)) continue;
    d.scores.push_back(raw.scores[i]);
    d.boxes_xyxy.push_back(raw.boxes_xyxy[i]);
    d.masks.push_back(raw.masks[i]);
  }
  return d;
}

// Sam3VideoInference._run_single_frame_inference -> Sam3VideoBase._det_track_one_frame
ConceptTracker::ConceptOut ConceptTracker::run_single_frame(int frame, bool reverse) {
  const int M = tracker_.mask_size(), MI = tracker_.config().input_mask_size;
  const std::size_t plane = static_cast<std::size_t>(M) * M;
  const bool allow = !prompt_.text.empty() || (prompt_.box_cxcywh && prompt_.box_frame == frame);
  std::shared_ptr<const FrameFeatures> f = features_(frame);

  // Step 1: the detector
  const Detections det = detect(*f, frame, allow);

  // Step 2: every tracker state one frame on, the memory encoder deferred; holes filled
  const std::vector<int64_t> prev_ids = global_obj_ids();
  std::vector<std::vector<float>> trk;  // low-res logits, filled
  std::vector<float> trk_scores;        // object-score logits
  {
    for (auto& s : states_) {
      if (s->obj_ids().empty()) continue;
      StepOutput step = s->track_frame(frame, reverse, false);
      for (const auto& o : step.outs) {
        trk.push_back(o->pred_masks);
        trk_scores.push_back(o->object_score);
      }
    }
    detail::Timer t(timings_, "postprocess", true);
    for (auto& m : trk) fill_holes_in_mask_scores(m.data(), M, M, cfg_.fill_hole_area);
  }
  if (hooks_.truth && !trk.empty()) {
    const std::vector<std::vector<float>> truth = hooks_.truth(frame);
    for (std::size_t i = 0; i < prev_ids.size(); ++i) {
      auto b = binding_.find(prev_ids[i]);
      if (b == binding_.end() || b->second >= static_cast<int>(truth.size())) continue;
      trk[i] = truth[b->second];
      trk_scores[i] = any_positive(trk[i]) ? 10.f : -10.f;
    }
  }

  // Step 3: planning (run_tracker_update_planning_phase)
  FrameTrace tr;
  tr.frame = frame;
  tr.reverse = reverse;
  tr.phase = phase_;
  tr.tracked = prev_ids;
  std::sort(tr.tracked.begin(), tr.tracked.end());
  tr.detections = static_cast<int>(det.size());
  tr.scores = det.scores;

  std::vector<const float*> det_ptrs, trk_ptrs;
  for (const auto& m : det.masks) det_ptrs.push_back(m.data());
  for (const auto& m : trk) trk_ptrs.push_back(m.data());
  const Association a = associate_det_trk(det_ptrs, det.scores, trk_ptrs, prev_ids, plane, pcfg_);
  std::vector<int> new_det = a.new_det;
  if (cfg_.suppress_det_close_to_boundary) {
    std::vector<int> kept;
    for (int d : new_det) {
      const auto& b = det.boxes_xyxy[d];
      const float xc = (b[0] + b[2]) / 2, yc = (b[1] + b[3]) / 2;
      if (xc > kBoundaryMargin && xc < 1.f - kBoundaryMargin && yc > kBoundaryMargin && yc < 1.f - kBoundaryMargin)
        kept.push_back(d);
    }
    new_det = kept;
  }
  const int prev_num = static_cast<int>(prev_ids.size());
  if (prev_num + static_cast<int>(new_det.size()) > cfg_.max_num_objects) {
    // _drop_new_det_with_obj_limit: the highest-scoring ones
    const int keep = std::max(0, cfg_.max_num_objects - prev_num);
    std::stable_sort(new_det.begin(), new_det.end(), [&](int x, int y) { return det.scores[x] > det.scores[y]; });
    new_det.resize(std::min<std::size_t>(keep, new_det.size()));
  }
  std::vector<int64_t> new_ids;
  for (std::size_t i = 0; i < new_det.size(); ++i) new_ids.push_back(max_obj_id_ + 1 + static_cast<int64_t>(i));

  // hotstart; a box-only prompt detects only on its own frame, so the frames where no
  // detection is allowed do not count a track as unmatched (else every object it found
  // is removed 8 frames later: upstream issues #263, #405; docs/video.md)
  std::set<int64_t> removed_now;
  if (allow || !prompt_.text.empty()) {
    removed_now = process_hotstart(frame, reverse, a, new_ids, hot_, pcfg_);
  } else {
    Association quiet = a;
    quiet.unmatched_trk.clear();
    removed_now = process_hotstart(frame, reverse, quiet, new_ids, hot_, pcfg_);
  }

  // reconditioning: on a box mismatch (if enabled) or every nth frame, the high-confidence
  // matches take the detector's mask as a new conditioning input
  std::set<int64_t> reconditioned_ids;  // (box-mismatch only: their outputs take the detector mask)
  bool recondition_iou = false;
  if (cfg_.reconstruction_bbox_iou_thresh > 0.f) {
    for (int64_t id : a.high_conf_order) {
      const int d = a.trk_to_high_conf_det.at(id);
      const auto it = std::find(prev_ids.begin(), prev_ids.end(), id);
      const std::size_t k = static_cast<std::size_t>(it - prev_ids.begin());
      if (!any_positive(trk[k])) continue;
      if (mask_box_iou(trk[k], M, det.boxes_xyxy[d]) < cfg_.reconstruction_bbox_iou_thresh &&
          det.scores[d] >= cfg_.reconstruction_bbox_det_score) {
        recondition_iou = true;
        reconditioned_ids.insert(id);
      }
    }
  }
  const bool recondition_periodic = cfg_.recondition_every_nth_frame > 0 &&
                                    frame % cfg_.recondition_every_nth_frame == 0 && !a.high_conf_order.empty();
  if (recondition_periodic || recondition_iou) {
    std::set<TrackerState*> touched;
    for (int64_t id : a.high_conf_order) {
      const std::size_t k = static_cast<std::size_t>(std::find(prev_ids.begin(), prev_ids.end(), id) - prev_ids.begin());
      if (!(trk_scores[k] > kReconditionMinLogit)) continue;
      const std::vector<uint8_t> mask = binary_at(det.masks[a.trk_to_high_conf_det.at(id)], M, MI, MI);
      for (auto& s : states_) {
        if (!s->has_object(static_cast<int>(id))) continue;
        s->add_new_mask(frame, static_cast<int>(id), mask, MI, MI);
        touched.insert(s.get());
        tr.reconditioned.push_back(id);
      }
    }
    for (auto& s : states_)
      if (touched.count(s.get())) s->propagate_in_video_preflight();
    std::sort(tr.reconditioned.begin(), tr.reconditioned.end());
  }

  // occlusion suppression, then the memories of every tracked object
  if (!trk.empty()) {
    std::vector<float*> planes;
    for (auto& m : trk) planes.push_back(m.data());
    if (cfg_.suppress_overlapping_based_on_recent_occlusion_threshold > 0.f) {
      const std::vector<uint8_t> sup =
          suppress_recent_occlusion(planes, plane, prev_ids, frame, reverse,
                                    cfg_.suppress_overlapping_based_on_recent_occlusion_threshold, removed_now,
                                    last_occluded_);
      for (std::size_t i = 0; i < sup.size(); ++i)
        if (sup[i]) tr.occlusion_suppressed.push_back(prev_ids[i]);
      std::sort(tr.occlusion_suppressed.begin(), tr.occlusion_suppressed.end());
    } else {
      last_occluded_.clear();
    }
    // _tracker_update_memories
    std::vector<std::vector<float>> high(trk.size());
    std::vector<float*> hp;
    for (std::size_t i = 0; i < trk.size(); ++i) {
      high[i] = resize_bilinear(trk[i].data(), M, M, MI, MI);
      hp.push_back(high[i].data());
    }
    suppress_area_shrinkage(hp, static_cast<std::size_t>(MI) * MI);
    std::size_t k = 0;
    for (auto& s : states_) {
      std::vector<std::vector<uint16_t>> mems;
      for (std::size_t j = 0; j < s->obj_ids().size(); ++j, ++k)
        mems.push_back(tracker_.encode_memory(*f, high[k], any_positive(high[k]) ? 10.f : -10.f, false, MI));
      if (!mems.empty()) s->set_frame_memory(frame, std::move(mems));
    }
  } else {
    last_occluded_.clear();
  }

  // metadata
  for (std::size_t i = 0; i < new_ids.size(); ++i) {
    obj_id_to_score_[new_ids[i]] = det.scores[new_det[i]];
    tracker_score_frame_wise_[frame][new_ids[i]] = det.scores[new_det[i]];
    max_obj_id_ = std::max(max_obj_id_, new_ids[i]);
  }
  for (int64_t id : removed_now) {
    obj_id_to_score_[id] = kRemovedScore;
    tracker_score_frame_wise_[frame][id] = kRemovedScore;
    last_occluded_.erase(id);
  }

  // Step 4: execution. New objects from their detector masks, in a state of their own
  if (!new_ids.empty()) {
    auto s = std::make_unique<TrackerState>(tracker_, num_frames_, width_, height_, features_, policy_, spill_);
    std::vector<std::vector<float>> truth;
    if (hooks_.truth) truth = hooks_.truth(frame);
    for (std::size_t i = 0; i < new_ids.size(); ++i) {
      const std::vector<float>& dm = det.masks[new_det[i]];
      s->add_new_mask(frame, static_cast<int>(new_ids[i]), binary_at(dm, M, MI, MI), MI, MI);
      int best = -1;
      float best_iou = 0.f;
      for (std::size_t t = 0; t < truth.size(); ++t) {
        if (truth[t].size() != dm.size()) throw Error("oracle: a truth mask is not the detections' size");
        const float iou = mask_iou(dm.data(), truth[t].data(), dm.size());
        if (best < 0 || iou > best_iou) best = static_cast<int>(t), best_iou = iou;
      }
      if (best >= 0 && best_iou >= 0.5f) binding_[new_ids[i]] = best;
    }
    s->propagate_in_video_preflight();
    states_.push_back(std::move(s));
  }
  for (int64_t id : removed_now) {
    for (auto it = states_.begin(); it != states_.end(); ++it) {
      if (!(*it)->has_object(static_cast<int>(id))) continue;
      (*it)->remove_object(static_cast<int>(id));
      if ((*it)->obj_ids().empty()) states_.erase(it);
      break;
    }
  }

  // masklet confirmation (update_masklet_confirmation_status)
  std::set<int64_t> matched;
  for (const auto& kv : a.det_to_matched_trk) matched.insert(kv.second.begin(), kv.second.end());
  const std::vector<int64_t> ids_now = global_obj_ids();
  if (cfg_.masklet_confirmation_enable) {
    std::vector<int> status(ids_now.size(), 0), consecutive(ids_now.size(), 0);
    for (std::size_t i = 0; i < ids_now.size(); ++i) {
      auto it = std::find(confirmation_ids_.begin(), confirmation_ids_.end(), ids_now[i]);
      if (it != confirmation_ids_.end()) {
        status[i] = confirmation_status_[it - confirmation_ids_.begin()];
        consecutive[i] = consecutive_det_num_[it - confirmation_ids_.begin()];
      }
      const bool is_matched = matched.count(ids_now[i]) ||
                              std::find(new_ids.begin(), new_ids.end(), ids_now[i]) != new_ids.end();
      consecutive[i] = is_matched ? consecutive[i] + 1 : 0;
      if (consecutive[i] >= cfg_.masklet_confirmation_consecutive_det_thresh) status[i] = 1;
    }
    confirmation_ids_ = ids_now;
    confirmation_status_ = status;
    consecutive_det_num_ = consecutive;
  }

  // Step 5: outputs (build_outputs)
  ConceptOut out;
  out.frame = frame;
  {
    detail::Timer t(timings_, "postprocess", true);
    for (std::size_t i = 0; i < prev_ids.size(); ++i) out.obj_id_to_mask[prev_ids[i]] = pack(trk[i]);
    for (std::size_t i = 0; i < new_ids.size(); ++i) {
      std::vector<float> m = det.masks[new_det[i]];
      fill_holes_in_mask_scores(m.data(), M, M, cfg_.fill_hole_area);
      out.obj_id_to_mask[new_ids[i]] = pack(m);
    }
    for (int64_t id : reconditioned_ids) out.obj_id_to_mask[id] = pack(det.masks[a.trk_to_high_conf_det.at(id)]);
  }
  for (std::size_t i = 0; i < prev_ids.size(); ++i) tracker_score_frame_wise_[frame][prev_ids[i]] = sigmoid(trk_scores[i]);
  out.obj_id_to_score = obj_id_to_score_;
  out.obj_id_to_tracker_score = tracker_score_frame_wise_[frame];
  out.removed_obj_ids = hot_.removed_obj_ids;
  out.suppressed_obj_ids = hot_.suppressed_obj_ids[frame];
  if (cfg_.masklet_confirmation_enable)
    for (std::size_t i = 0; i < ids_now.size(); ++i)
      if (!confirmation_status_[i]) out.unconfirmed_obj_ids.insert(ids_now[i]);
  has_outputs_[frame] = 1;
  cache_frame_outputs(frame, out.obj_id_to_mask, {});

  tr.spawned = new_ids;
  tr.matched.assign(matched.begin(), matched.end());
  for (const auto& kv : a.det_to_matched_trk)
    if (!kv.second.empty()) tr.det_matches[kv.first] = kv.second;
  tr.unmatched = a.unmatched_trk;
  tr.empty = a.empty_trk;
  for (auto* v : {&tr.unmatched, &tr.empty}) std::sort(v->begin(), v->end());
  tr.removed.assign(removed_now.begin(), removed_now.end());
  tr.suppressed.assign(hot_.suppressed_obj_ids[frame].begin(), hot_.suppressed_obj_ids[frame].end());
  tr.high_conf_matches = a.trk_to_high_conf_det;
  trace_.push_back(std::move(tr));
  return out;
}

void ConceptTracker::cache_frame_outputs(int frame, const std::map<int64_t, PackedMask>& masks,
                                         const std::set<int64_t>& hidden) {
  std::map<int64_t, PackedMask>& c = cached_outputs_[frame];
  c.clear();
  for (const auto& kv : masks)
    if (!hidden.count(kv.first)) c.insert(kv);
}

// Sam3VideoInference._postprocess_output: drop empty and hidden objects, boxes from the
// masks, then the object-wise non-overlap by tracker score
VideoFrameResult ConceptTracker::postprocess(int frame, const std::map<int64_t, PackedMask>& masks,
                                             const std::map<int64_t, float>& scores,
                                             const std::map<int64_t, float>& tracker_scores,
                                             const std::set<int64_t>& hidden) const {
  detail::Timer t(timings_, "postprocess", true);
  VideoFrameResult r;
  r.frame = frame;
  r.width = width_;
  r.height = height_;
  std::vector<float> tscores;
  for (const auto& [id, pm] : masks) {  // ascending ids
    if (hidden.count(id)) continue;
    VideoObject o;
    o.obj_id = static_cast<int>(id);
    o.mask = rle_decode(pm.counts, height_, width_);
    o.box = mask_bbox_xyxy(o.mask.data(), height_, width_);
    if (!(o.box[2] > 0)) continue;  // empty
    o.present = true;
    auto s = scores.find(id);
    o.score = s == scores.end() ? 0.f : s->second;
    auto ts = tracker_scores.find(id);
    tscores.push_back(ts == tracker_scores.end() ? 0.f : ts->second);
    r.objects.push_back(std::move(o));
  }
  if (r.objects.size() > 1) {
    std::vector<uint8_t*> planes;
    for (auto& o : r.objects) planes.push_back(o.mask.data());
    apply_object_wise_non_overlap(planes, tscores, static_cast<std::size_t>(width_) * height_);
  }
  return r;
}

VideoFrameResult ConceptTracker::add_prompt(int frame, const ConceptPromptSpec& prompt) {
  // since it is a semantic prompt, start over (reset_state)
  states_.clear();
  max_obj_id_ = -1;
  obj_id_to_score_.clear();
  tracker_score_frame_wise_.clear();
  last_occluded_.clear();
  hot_ = HotstartState{};
  confirmation_ids_.clear();
  confirmation_status_.clear();
  consecutive_det_num_.clear();
  binding_.clear();
  std::fill(has_outputs_.begin(), has_outputs_.end(), 0);
  cached_outputs_.clear();
  history_.clear();
  trace_.clear();
  prompt_ = prompt;
  has_prompt_ = true;
  detector_.set_prompt(prompt);
  last_detections_frame_ = -1;
  phase_ = "add_prompt";
  ConceptOut out = run_single_frame(frame, false);
  release_memory(frame + 1, false, frame);
  return postprocess(frame, out.obj_id_to_mask, out.obj_id_to_score, out.obj_id_to_tracker_score, {});
}

int ConceptTracker::default_start() const {
  for (int f = 0; f < num_frames_; ++f)
    if (has_outputs_[f]) return f;
  throw Error("nothing to track: add a text or exemplar prompt first");
}

// Sam3VideoInference._get_processing_order (a backward pass starts before `start`)
std::vector<int> ConceptTracker::processing_order(int start, int max_frames, bool reverse, int* end) const {
  if (max_frames < 0) max_frames = num_frames_;
  std::vector<int> order;
  if (reverse) {
    *end = std::max(start - max_frames, 0);
    for (int f = start - 1; f >= *end; --f) order.push_back(f);
  } else {
    *end = std::min(start + max_frames, num_frames_ - 1);
    for (int f = start; f <= *end; ++f) order.push_back(f);
  }
  return order;
}

// parse_action_history_for_propagation
std::pair<std::string, std::vector<int>> ConceptTracker::parse_action_history() const {
  if (history_.empty()) return {"propagation_full", {}};
  const Action& last = history_.back();
  if (last.type.rfind("propagation", 0) == 0) {
    if (last.type == "propagation_fetch") return {"propagation_fetch", {}};
    const bool twice = history_.size() > 1 && (history_[history_.size() - 2].type == "propagation_partial" ||
                                               history_[history_.size() - 2].type == "propagation_full");
    if (twice || last.frame == 0 || last.frame == num_frames_ - 1) return {"propagation_fetch", {}};
    return {last.type, last.obj_ids};
  }
  std::set<int> ids;
  for (auto it = history_.rbegin(); it != history_.rend(); ++it) {
    if (it->type.rfind("propagation", 0) == 0) break;
    if (it->type == "add" || it->type == "refine") ids.insert(it->obj_ids.begin(), it->obj_ids.end());
  }
  if (ids.empty()) return {"propagation_fetch", {}};
  return {"propagation_partial", std::vector<int>(ids.begin(), ids.end())};
}

int ConceptTracker::frames_to_track(const PropagateOptions& o) const {
  const int start = o.start >= 0 ? o.start : default_start();
  int end = 0, count = 0;
  if (o.direction != Direction::Backward) count += static_cast<int>(processing_order(start, o.max_frames, false, &end).size());
  if (o.direction != Direction::Forward) count += static_cast<int>(processing_order(start, o.max_frames, true, &end).size());
  return count;
}

void ConceptTracker::release_memory(int next_frame, bool reverse, int frame) {
  for (auto& s : states_) {
    std::set<int> hold = s->memory_frames_for(next_frame, reverse);
    hold.insert(frame);
    s->release_except(hold);
  }
}

void ConceptTracker::propagate(const PropagateOptions& o,
                               const std::function<bool(const VideoFrameResult&)>& on_frame) {
  if (!has_prompt_) throw Error("nothing to track: add a text or exemplar prompt first");
  if (o.max_frames < -1) throw Error("max_frames must be >= 0 (or -1 for all)");
  if (o.start >= num_frames_) throw Error("start frame " + std::to_string(o.start) + " is out of range");
  std::vector<bool> passes;
  if (o.direction != Direction::Backward) passes.push_back(false);
  if (o.direction != Direction::Forward) passes.push_back(true);
  for (bool reverse : passes) {
    const int start = o.start >= 0 ? o.start : default_start();
    auto [type, ids] = parse_action_history();
    history_.push_back(Action{type, o.start, ids});
    int end = 0;
    const std::vector<int> order = processing_order(start, o.max_frames, reverse, &end);
    if (type == "propagation_partial") {
      if (!propagate_partial(order, reverse, ids, on_frame)) return;
      continue;
    }
    if (type == "propagation_fetch") {
      for (int frame : order) {
        static const std::map<int64_t, PackedMask> none;
        auto c = cached_outputs_.find(frame);
        auto ts = tracker_score_frame_wise_.find(frame);
        static const std::map<int64_t, float> no_scores;
        auto sup = hot_.suppressed_obj_ids.find(frame);
        std::set<int64_t> hidden = sup == hot_.suppressed_obj_ids.end() ? std::set<int64_t>{} : sup->second;
        if (!on_frame(postprocess(frame, c == cached_outputs_.end() ? none : c->second, obj_id_to_score_,
                                  ts == tracker_score_frame_wise_.end() ? no_scores : ts->second, hidden)))
          return;
      }
      continue;
    }
    // full detect-and-track, outputs held back until hotstart_delay frames are buffered
    phase_ = "propagate";
    std::vector<ConceptOut> buffer;
    std::set<int64_t> removed;
    std::map<int, std::set<int64_t>> unconfirmed;  // frame -> ids not confirmed yet
    // an object is shown on a frame if it is confirmed (consecutive_det_thresh - 1) frames later
    const int delay = cfg_.masklet_confirmation_consecutive_det_thresh - 1;
    for (int frame : order) {
      ConceptOut out = run_single_frame(frame, reverse);
      release_memory(reverse ? frame - 1 : frame + 1, reverse, frame);
      std::vector<ConceptOut> ready;
      if (cfg_.hotstart_delay > 0) {
        removed.insert(out.removed_obj_ids.begin(), out.removed_obj_ids.end());
        if (cfg_.masklet_confirmation_enable) unconfirmed[frame] = out.unconfirmed_obj_ids;
        buffer.push_back(std::move(out));
        if (frame == end) {
          ready.swap(buffer);
        } else if (static_cast<int>(buffer.size()) >= cfg_.hotstart_delay) {
          ready.push_back(std::move(buffer.front()));
          buffer.erase(buffer.begin());
        }
      } else {
        ready.push_back(std::move(out));
      }
      for (ConceptOut& r : ready) {
        std::set<int64_t> hidden = r.suppressed_obj_ids;
        hidden.insert(removed.begin(), removed.end());
        const int later = std::max(0, std::min(reverse ? r.frame - delay : r.frame + delay, num_frames_ - 1));
        auto u = unconfirmed.find(later);
        if (u != unconfirmed.end()) hidden.insert(u->second.begin(), u->second.end());
        VideoFrameResult res =
            postprocess(r.frame, r.obj_id_to_mask, r.obj_id_to_score, r.obj_id_to_tracker_score, hidden);
        cache_frame_outputs(r.frame, r.obj_id_to_mask, hidden);
        if (!on_frame(res)) {
          for (auto& s : states_) s->release_except({});
          return;
        }
      }
    }
    for (auto& s : states_) s->release_except({});
  }
}

// The clicked objects' states alone, with their memories (run_mem_encoder); the other
// objects keep their cached outputs. Returns false when on_frame stopped it.
bool ConceptTracker::propagate_partial(const std::vector<int>& order, bool reverse, const std::vector<int>& obj_ids,
                                       const std::function<bool(const VideoFrameResult&)>& on_frame) {
  const int M = tracker_.mask_size();
  std::vector<TrackerState*> sel;
  for (auto& s : states_)
    for (int id : obj_ids)
      if (s->has_object(id)) {
        sel.push_back(s.get());
        break;
      }
  for (TrackerState* s : sel) s->propagate_in_video_preflight();
  for (int frame : order) {
    std::map<int64_t, PackedMask> masks;
    if (cached_outputs_.count(frame)) masks = cached_outputs_.at(frame);
    for (TrackerState* s : sel) {
      StepOutput step = s->track_frame(frame, reverse, true);
      for (std::size_t i = 0; i < step.obj_ids.size(); ++i) {
        if (std::find(obj_ids.begin(), obj_ids.end(), step.obj_ids[i]) == obj_ids.end()) continue;
        std::vector<float> low = step.outs[i]->pred_masks;
        fill_holes_in_mask_scores(low.data(), M, M, cfg_.fill_hole_area);
        // the official stores the refined object's score logit here (not its sigmoid)
        tracker_score_frame_wise_[frame][step.obj_ids[i]] = step.outs[i]->object_score;
        masks[step.obj_ids[i]] = pack(low);
      }
    }
    for (TrackerState* s : sel) {
      std::set<int> hold = s->memory_frames_for(reverse ? frame - 1 : frame + 1, reverse);
      hold.insert(frame);
      s->release_except(hold);
    }
    const std::set<int64_t> hidden = hot_.suppressed_obj_ids[frame];
    cache_frame_outputs(frame, masks, hidden);
    if (!on_frame(postprocess(frame, masks, obj_id_to_score_, tracker_score_frame_wise_[frame], hidden))) {
      for (TrackerState* s : sel) s->release_except({});
      return false;
    }
  }
  for (TrackerState* s : sel) s->release_except({});
  return true;
}

VideoFrameResult ConceptTracker::add_points(int frame, int obj_id, PointInputs points) {
  auto cached = cached_outputs_.find(frame);
  if (cached == cached_outputs_.end())
    throw Error("frame " + std::to_string(frame) + " has no concept-tracking output yet: clicks refine "
                "the results of a propagation over that frame (or of the prompt's frame)");
  TrackerState* st = nullptr;
  for (auto& s : states_)
    if (s->has_object(obj_id)) st = s.get();
  if (!st) {
    const std::size_t n = global_obj_ids().size();
    if (static_cast<int>(n) >= cfg_.max_num_objects)
      throw Error("cannot add object " + std::to_string(obj_id) + ": already tracking " + std::to_string(n) +
                  " objects (max_num_objects)");
    states_.push_back(std::make_unique<TrackerState>(tracker_, num_frames_, width_, height_, features_, policy_, spill_));
    st = states_.back().get();
    max_obj_id_ = std::max<int64_t>(max_obj_id_, obj_id);
    history_.push_back(Action{"add", frame, {obj_id}});
  } else {
    history_.push_back(Action{"refine", frame, {obj_id}});
  }
  // a clicked object counts as detected with certainty and is never hidden again
  obj_id_to_score_[obj_id] = 1.f;
  tracker_score_frame_wise_[frame][obj_id] = 1.f;
  hot_.removed_obj_ids.erase(obj_id);
  for (auto& kv : hot_.suppressed_obj_ids) kv.second.erase(obj_id);
  for (std::size_t i = 0; i < confirmation_ids_.size(); ++i)
    if (confirmation_ids_[i] == obj_id) {
      confirmation_status_[i] = 1;
      consecutive_det_num_[i] = cfg_.masklet_confirmation_consecutive_det_thresh;
    }
  st->add_new_points(frame, obj_id, std::move(points));
  std::vector<std::vector<float>> logits = st->video_res_masks(frame);
  const std::size_t k = static_cast<std::size_t>(
      std::find(st->obj_ids().begin(), st->obj_ids().end(), obj_id) - st->obj_ids().begin());
  std::vector<float>& mine = logits.at(k);
  fill_holes_in_mask_scores(mine.data(), height_, width_, cfg_.fill_hole_area);
  std::vector<uint8_t> binary(mine.size());
  for (std::size_t i = 0; i < binary.size(); ++i) binary[i] = mine[i] > 0.f ? 1 : 0;
  st->propagate_in_video_preflight();
  st->clear_detector_cond_frames(obj_id, frame, cfg_.refinement_detector_cond_frame_removal_window);
  std::map<int64_t, PackedMask> masks = cached->second;
  masks[obj_id] = PackedMask{rle_encode(binary.data(), height_, width_)};
  const std::set<int64_t> hidden = hot_.suppressed_obj_ids[frame];
  cache_frame_outputs(frame, masks, hidden);
  release_memory(frame + 1, false, frame);
  return postprocess(frame, masks, obj_id_to_score_, tracker_score_frame_wise_[frame], hidden);
}

void ConceptTracker::remove_object(int obj_id) {
  bool found = false;
  for (auto it = states_.begin(); it != states_.end(); ++it) {
    if (!(*it)->has_object(obj_id)) continue;
    (*it)->remove_object(obj_id);
    if ((*it)->obj_ids().empty()) states_.erase(it);
    found = true;
    break;
  }
  if (!found) throw Error("no object " + std::to_string(obj_id) + " in this session");
  history_.push_back(Action{"remove", -1, {obj_id}});
  obj_id_to_score_.erase(obj_id);
  for (auto& kv : cached_outputs_) kv.second.erase(obj_id);
}

std::size_t ConceptTracker::bytes() const {
  std::size_t b = 0;
  for (const auto& s : states_) b += s->bytes();
  for (const auto& kv : cached_outputs_)
    for (const auto& m : kv.second) b += m.second.counts.size();
  return b;
}

std::size_t ConceptTracker::frames_with_memory() const {
  std::size_t n = 0;
  for (const auto& s : states_) n += s->frames_with_memory();
  return n;
}

}  // namespace video
}  // namespace sam3
