// sam3::VideoSession: frames, features, the tracker states and the output step.
#include <algorithm>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <cmath>
#include <list>
#include <set>

#include "model_impl.h"
#include "sam3/postprocess.h"
#include "sam3/rle.h"
#include "sam3/video.h"
#include "sam3/video_postprocess.h"
#include "sam3/video_reader.h"
#include "video/concept_options.h"
#include "video/concept_tracker.h"
#include "video/detector.h"
#include "video/tracker_model.h"
#include "video/tracker_state.h"

namespace sam3 {

using video::FrameFeatures;
using video::TrackerState;

namespace {

// Every frame allocates and frees the components' buffers (MBs; GBs at full size).
// glibc raises its mmap threshold after such frees, then serves those sizes from the
// heap and keeps what is freed there: a 300-frame tiny video peaked at 3x the RSS of a
// 30-frame one. Pinning the threshold at glibc's default (process-wide, once) and
// trimming after each frame keeps the peak flat (docs/video.md, "Memory").
void pin_mmap_threshold() {
#ifdef __GLIBC__
  static const bool once = mallopt(M_MMAP_THRESHOLD, 128 * 1024) != 0;
  (void)once;
#endif
}

void return_freed_memory() {
#ifdef __GLIBC__
  malloc_trim(0);
#endif
}

// Features of the last few frames: a prompt and the propagation step after it, or the
// preflight on a prompted frame, need the same frame again (the official predictor
// keeps one; an image encode is the costliest step).
constexpr std::size_t kFeatureCacheFrames = 2;

}  // namespace

struct VideoSession::Impl {
  Model::Impl& model;
  std::unique_ptr<VideoReader> reader;
  std::map<std::string, double> timings;
  video::TrackerModel tracker;
  std::list<std::pair<int, std::shared_ptr<const FrameFeatures>>> cache;  // most recent first
  std::vector<std::unique_ptr<TrackerState>> states;
  std::set<int> removed;
  VideoOptions options;
  DetectorConfig concept_config;
  std::unique_ptr<video::SpillStore> spill;
  std::unique_ptr<video::Detector> detector;
  std::unique_ptr<video::ConceptTracker> concept;  // set while concept tracking

  Impl(Model::Impl& m, const std::string& path, const VideoOptions& o)
      : model(m), reader(VideoReader::open(path)), tracker(m.manifest, components(m), timings), options(o),
        concept_config(m.manifest.detector) {
    video::apply_concept_options(concept_config, o.concept_options);
    if (o.memory == VideoMemory::Spill) spill = std::make_unique<video::SpillStore>(o.spill_dir);
    pin_mmap_threshold();
  }

  void check_not_concept(const char* what) const {
    if (concept)
      throw Error(std::string(what) + " on a concept-tracking session: refine concept objects with clicks "
                  "(add_points); reset() the session to track from masks");
  }

  static std::map<std::string, const detail::Component*> components(const Model::Impl& m) {
    std::map<std::string, const detail::Component*> c;
    for (const auto& [name, comp] : m.components) c[name] = comp.get();
    return c;
  }

  int n() const { return reader->num_frames(); }
  int w() const { return reader->width(); }
  int h() const { return reader->height(); }

  // concept tracking also keeps the detector's levels
  std::shared_ptr<const FrameFeatures> features(int frame) {
    const bool with_detector = concept != nullptr;
    for (auto it = cache.begin(); it != cache.end(); ++it) {
      if (it->first != frame) continue;
      if (with_detector && it->second->detector.empty()) {
        cache.erase(it);
        break;
      }
      cache.splice(cache.begin(), cache, it);
      return it->second;
    }
    Image img;
    {
      detail::Timer t(timings, "decode", true);
      img = reader->frame(frame);
    }
    auto f = std::make_shared<const FrameFeatures>(tracker.encode_frame(img, with_detector));
    cache.emplace_front(frame, f);
    while (cache.size() > kFeatureCacheFrames) cache.pop_back();
    return f;
  }

  void check_frame(int frame) const {
    if (frame < 0 || frame >= n())
      throw Error("frame " + std::to_string(frame) + " is out of range: the video has " +
                  std::to_string(n()) + " frames (0.." + std::to_string(n() - 1) + ")");
  }

  void check_new_prompt(int obj_id) const {
    if (removed.count(obj_id))
      throw Error("object " + std::to_string(obj_id) + " was removed; prompt a new id instead");
    size_t count = 0;
    for (const auto& s : states) {
      if (s->has_object(obj_id)) return;
      count += s->obj_ids().size();
    }
    if (count >= static_cast<size_t>(kMaxVideoObjects))
      throw Error("a session tracks at most " + std::to_string(kMaxVideoObjects) + " objects (the limit)");
  }

  // The state holding obj_id; else one that has not started tracking; else a new one
  // (Sam3VideoInference gives objects added during tracking a state of their own).
  TrackerState& state_for(int obj_id) {
    for (auto& s : states)
      if (s->has_object(obj_id)) return *s;
    for (auto& s : states)
      if (!s->tracking_has_started()) return *s;
    states.push_back(std::make_unique<TrackerState>(
        tracker, n(), w(), h(), [this](int f) { return features(f); }, options.memory, spill.get()));
    return *states.back();
  }

  // An object from its binary mask at video size.
  VideoObject make_object(int id, float score, std::vector<uint8_t> mask) const {
    VideoObject v;
    v.obj_id = id;
    v.score = score;
    v.mask = std::move(mask);
    v.box = mask_bbox_xyxy(v.mask.data(), h(), w());
    v.present = v.box[2] > 0;
    return v;
  }

  // The output step of the video predictor for tracked objects: fill small holes in the
  // low-res logits, upscale, > 0, boxes from masks, object-wise non-overlap by score.
  VideoFrameResult finish(int frame, std::vector<std::pair<int, const video::ObjFrame*>> objs) {
    detail::Timer t(timings, "postprocess", true);
    std::sort(objs.begin(), objs.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
    const int M = tracker.mask_size(), H = h(), W = w();
    VideoFrameResult r;
    r.frame = frame;
    r.width = W;
    r.height = H;
    std::vector<uint8_t*> masks;
    std::vector<float> scores;
    for (const auto& [id, o] : objs) {
      std::vector<float> low = o->pred_masks;
      fill_holes_in_mask_scores(low.data(), M, M, tracker.config().output_fill_hole_area);
      const std::vector<float> up = resize_bilinear(low.data(), M, M, H, W);
      std::vector<uint8_t> mask(up.size());
      for (std::size_t i = 0; i < up.size(); ++i) mask[i] = up[i] > 0.f ? 1 : 0;
      r.objects.push_back(make_object(id, sigmoid(o->object_score), std::move(mask)));
    }
    for (auto& v : r.objects) {
      masks.push_back(v.mask.data());
      scores.push_back(v.score);
    }
    apply_object_wise_non_overlap(masks, scores, static_cast<std::size_t>(H) * W);
    return r;
  }

  // the frame propagate starts from: options.start, else the earliest prompted frame
  int resolve_start(const PropagateOptions& o) const {
    if (o.max_frames < -1) throw Error("max_frames must be >= 0 (or -1 for all)");
    int start = o.start;
    if (start < 0) {
      start = n();
      for (const auto& st : states) {
        if (st->first_cond_frame() >= 0) start = std::min(start, st->first_cond_frame());
        if (st->first_prompt_frame() >= 0) start = std::min(start, st->first_prompt_frame());
      }
      if (start == n()) throw Error("nothing to track: add points, a box or a mask first");
    }
    check_frame(start);
    return start;
  }

  // Sam3TrackerPredictor._get_processing_order
  std::vector<int> processing_order(const PropagateOptions& o, int start, bool reverse) const {
    const int max_frames = o.max_frames < 0 ? n() : o.max_frames;
    std::vector<int> order;
    if (reverse) {
      const int end = std::max(start - max_frames, 0);
      if (start > 0)
        for (int f = start; f >= end; --f) order.push_back(f);
      else
        order.push_back(0);
    } else {
      const int end = std::min(start + max_frames, n() - 1);
      for (int f = start; f <= end; ++f) order.push_back(f);
    }
    return order;
  }

  VideoFrameResult prompt_result(int frame, TrackerState& s) {
    std::vector<std::vector<float>> logits = s.video_res_masks(frame);
    VideoFrameResult r;
    r.frame = frame;
    r.width = w();
    r.height = h();
    for (std::size_t i = 0; i < logits.size(); ++i) {
      std::vector<uint8_t> mask(logits[i].size());
      for (std::size_t p = 0; p < mask.size(); ++p) mask[p] = logits[i][p] > 0.f ? 1 : 0;
      // 1.0: the video predictor's score for a prompted object
      r.objects.push_back(make_object(s.obj_ids()[i], 1.f, std::move(mask)));
    }
    std::sort(r.objects.begin(), r.objects.end(),
              [](const VideoObject& a, const VideoObject& b) { return a.obj_id < b.obj_id; });
    return r;
  }
};

VideoSession::VideoSession(Model& model, const std::string& video, const VideoOptions& options)
    : impl_(std::make_unique<Impl>(*model.impl_, video, options)) {}

VideoSession::~VideoSession() = default;

int VideoSession::num_frames() const { return impl_->n(); }
int VideoSession::width() const { return impl_->w(); }
int VideoSession::height() const { return impl_->h(); }

VideoFrameResult VideoSession::add_points(int frame, int obj_id, const std::vector<Point>& points,
                                          const std::optional<Box>& box) {
  Impl& s = *impl_;
  s.check_frame(frame);
  if (s.concept && box) throw Error("add_points on a concept-tracking session: clicks only (no box), as the "
                                    "official video model takes them");
  if (!s.concept) s.check_new_prompt(obj_id);
  if (obj_id < 0) throw Error("object ids are >= 0");
  if (points.empty() && !box) throw Error("add_points: give at least one point or a box");
  if (points.size() > static_cast<size_t>(kMaxVideoPoints))
    throw Error("add_points: at most " + std::to_string(kMaxVideoPoints) + " points per call (the limit), got " +
                std::to_string(points.size()));
  const float W = static_cast<float>(s.w()), H = static_cast<float>(s.h());
  const float S = static_cast<float>(s.model.manifest.image_size);
  // video pixels -> relative -> input pixels, as the predictor's rel_coordinates path
  auto to_input = [&](float x, float y) { return std::array<float, 2>{x / W * S, y / H * S}; };
  video::PointInputs in;
  if (box) {
    const Box& b = *box;
    detail::check_box(b, s.w(), s.h(), "frame");
    for (auto xy : {to_input(b.x0, b.y0), to_input(b.x1, b.y1)}) in.coords.insert(in.coords.end(), xy.begin(), xy.end());
    in.labels = {2, 3};
  }
  for (const Point& p : points) {
    detail::check_point(p, s.w(), s.h(), "frame");
    auto xy = to_input(p.x, p.y);
    in.coords.insert(in.coords.end(), xy.begin(), xy.end());
    in.labels.push_back(p.positive ? 1 : 0);
  }
  if (s.concept) return s.concept->add_points(frame, obj_id, std::move(in));
  TrackerState& st = s.state_for(obj_id);
  st.add_new_points(frame, obj_id, std::move(in));
  return s.prompt_result(frame, st);
}

VideoFrameResult VideoSession::add_box(int frame, int obj_id, const Box& box) {
  return add_points(frame, obj_id, {}, box);
}

VideoFrameResult VideoSession::add_mask(int frame, int obj_id, const std::vector<uint8_t>& mask) {
  Impl& s = *impl_;
  s.check_frame(frame);
  s.check_not_concept("add_mask");
  s.check_new_prompt(obj_id);
  const std::size_t want = static_cast<std::size_t>(s.w()) * s.h();
  if (mask.size() != want)
    throw Error("mask has " + std::to_string(mask.size()) + " pixels; the video frames are " +
                std::to_string(s.w()) + "x" + std::to_string(s.h()) + " (" + std::to_string(want) + ")");
  TrackerState& st = s.state_for(obj_id);
  st.add_new_mask(frame, obj_id, mask);
  return s.prompt_result(frame, st);
}

VideoFrameResult VideoSession::add_prompt(int frame, const VideoConceptPrompt& prompt) {
  Impl& s = *impl_;
  s.check_frame(frame);
  const bool blank = prompt.text.find_first_not_of(" \t\r\n") == std::string::npos;
  if (blank && !prompt.text.empty()) throw Error("add_prompt: the text prompt is blank");
  if (blank && !prompt.box) throw Error("add_prompt: give a text, an exemplar box, or both");
  if (prompt.text.size() > kMaxTextBytes)
    throw Error("add_prompt: the text prompt has " + std::to_string(prompt.text.size()) + " bytes; the limit is " +
                std::to_string(kMaxTextBytes) + " (the model reads 30 tokens)");
  video::ConceptPromptSpec spec;
  spec.text = prompt.text;
  if (prompt.box) {
    const Box& b = *prompt.box;
    detail::check_box(b, s.w(), s.h(), "frame");
    const float W = static_cast<float>(s.w()), H = static_cast<float>(s.h());
    // normalised xywh -> cxcywh, as the official add_prompt converts it
    const float x = b.x0 / W, y = b.y0 / H, bw = (b.x1 - b.x0) / W, bh = (b.y1 - b.y0) / H;
    spec.box_cxcywh = std::array<float, 4>{x + 0.5f * bw, y + 0.5f * bh, bw, bh};
    spec.box_positive = b.positive;
    spec.box_frame = frame;
  }
  if (!s.detector)
    s.detector = std::make_unique<video::Detector>(s.model.manifest, s.model.get("text_encoder"),
                                                   s.model.get("grounding_head"), *s.model.tokenizer, s.timings);
  s.states.clear();
  s.removed.clear();
  s.concept = std::make_unique<video::ConceptTracker>(
      s.tracker, *s.detector, s.concept_config, s.n(), s.w(), s.h(), [&s](int f) { return s.features(f); },
      s.options.memory, s.spill.get(), s.timings);
  return s.concept->add_prompt(frame, spec);
}

void VideoSession::propagate(const PropagateOptions& options,
                             const std::function<bool(const VideoFrameResult&)>& on_frame) {
  Impl& s = *impl_;
  if (s.concept) {
    if (options.start >= 0) s.check_frame(options.start);
    s.concept->propagate(options, [&](const VideoFrameResult& r) {
      return_freed_memory();
      return on_frame(r);
    });
    return;
  }
  std::vector<TrackerState*> active;
  for (auto& st : s.states)
    if (st->has_inputs() || st->first_cond_frame() >= 0) active.push_back(st.get());
  if (active.empty()) throw Error("nothing to track: add points, a box or a mask first");
  for (TrackerState* st : active) st->propagate_in_video_preflight();
  bool stopped = false;
  const int start = s.resolve_start(options);
  std::vector<bool> passes;
  if (options.direction != Direction::Backward) passes.push_back(false);
  if (options.direction != Direction::Forward) passes.push_back(true);
  for (bool reverse : passes) {
    for (int frame : s.processing_order(options, start, reverse)) {
      std::vector<std::pair<int, const video::ObjFrame*>> objs;
      std::vector<video::StepOutput> keep;
      for (TrackerState* st : active) {
        if (st->first_cond_frame() < 0) continue;  // its prompts were all removed
        keep.push_back(st->track_frame(frame, reverse));
        for (std::size_t i = 0; i < keep.back().obj_ids.size(); ++i)
          objs.emplace_back(keep.back().obj_ids[i], keep.back().outs[i].get());
      }
      VideoFrameResult r = s.finish(frame, std::move(objs));
      keep.clear();
      // bounded memory: keep in RAM what tracking the next frame reads (and, without a
      // spill file, what the backward half of a Both propagation will read)
      for (TrackerState* st : active) {
        std::set<int> hold = st->memory_frames_for(reverse ? frame - 1 : frame + 1, reverse);
        if (!reverse && passes.size() == 2 && s.options.memory == VideoMemory::Drop) {
          std::set<int> later = st->memory_frames_for(start - 1, true);
          hold.insert(later.begin(), later.end());
        }
        hold.insert(frame);
        st->release_except(hold);
      }
      return_freed_memory();
      if (!on_frame(r)) {
        stopped = true;
        break;
      }
    }
    if (stopped) break;
  }
  for (TrackerState* st : active) st->release_except({});
}

int VideoSession::frames_to_track(const PropagateOptions& options) const {
  if (impl_->concept) {
    if (options.start >= 0) impl_->check_frame(options.start);
    return impl_->concept->frames_to_track(options);
  }
  const int start = impl_->resolve_start(options);
  int count = 0;
  if (options.direction != Direction::Backward)
    count += static_cast<int>(impl_->processing_order(options, start, false).size());
  if (options.direction != Direction::Forward)
    count += static_cast<int>(impl_->processing_order(options, start, true).size());
  return count;
}

void VideoSession::remove_object(int obj_id) {
  Impl& s = *impl_;
  if (s.concept) return s.concept->remove_object(obj_id);
  for (auto it = s.states.begin(); it != s.states.end(); ++it) {
    if (!(*it)->has_object(obj_id)) continue;
    (*it)->remove_object(obj_id);
    if ((*it)->obj_ids().empty()) s.states.erase(it);
    s.removed.insert(obj_id);
    return;
  }
  throw Error("no object " + std::to_string(obj_id) + " in this session");
}

void VideoSession::reset() {
  impl_->concept.reset();
  impl_->states.clear();
  impl_->removed.clear();
}

std::vector<int> VideoSession::object_ids() const {
  if (impl_->concept) return impl_->concept->object_ids();
  std::vector<int> ids;
  for (const auto& s : impl_->states) ids.insert(ids.end(), s->obj_ids().begin(), s->obj_ids().end());
  std::sort(ids.begin(), ids.end());
  return ids;
}

const std::map<std::string, double>& VideoSession::timings() const { return impl_->timings; }

VideoMemoryStats VideoSession::memory_stats() const {
  VideoMemoryStats m;
  for (const auto& s : impl_->states) {
    m.memory_bytes += s->bytes();
    m.frames_with_memory += s->frames_with_memory();
  }
  if (impl_->concept) {
    m.memory_bytes += impl_->concept->bytes();
    m.frames_with_memory += impl_->concept->frames_with_memory();
  }
  m.cached_feature_frames = impl_->cache.size();
  m.spilled_bytes = impl_->spill ? impl_->spill->size() : 0;
  return m;
}

}  // namespace sam3
