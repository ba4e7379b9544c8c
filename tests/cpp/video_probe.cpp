// video_probe: runs one internal step of the video runtime on a bundle and prints JSON, for
// the parity tests that compare it with the official code (tests/python/test_concept_steps.py).
// Not installed; the internal classes are used directly.
//
//   video_probe detect BUNDLE FRAME.png TEXT [cx cy w h label] [score_threshold nms_threshold]
//     the detector step (video/detector.h) on one frame, preprocessed as the video loader
//   video_probe concept BUNDLE FRAMES ACTIONS.json [ORACLE.json]
//     concept tracking (video/concept_tracker.h) through an action script in
//     concept_reference.run_concept's format, with its oracles from ORACLE.json
//     ({"options": {name: value}, "detections": {frame: {"masks": ["0101..."], "boxes",
//     "scores"}}, "truth": {frame: ["0101..."]}}; mask strings are +-10 logits); prints the
//     last output of every frame and the per-frame trace
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <set>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "component.h"
#include "sam3/error.h"
#include "sam3/image.h"
#include "sam3/manifest.h"
#include "sam3/safetensors.h"
#include "sam3/tokenizer.h"
#include "sam3/rle.h"
#include "sam3/video.h"
#include "sam3/video_reader.h"
#include "video/concept_options.h"
#include "video/concept_tracker.h"
#include "video/detector.h"
#include "video/tracker_model.h"

namespace {

using nlohmann::json;

// A bundle's components, loaded as the runtime loads them.
struct Bundle {
  sam3::Manifest manifest;
  sam3::SafeTensors weights;
  std::map<std::string, std::unique_ptr<sam3::detail::Component>> comps;
  std::map<std::string, double> timings;
  sam3::Tokenizer tokenizer;
  sam3::video::TrackerModel tracker;
  sam3::video::Detector detector;

  explicit Bundle(const std::string& dir)
      : manifest(sam3::load_manifest(dir)), weights(manifest.path(manifest.weights_file)),
        comps(load(manifest, weights)), tokenizer(manifest.path(manifest.vocab_file)),
        tracker(manifest, pointers(comps), timings),
        detector(manifest, *comps.at("text_encoder"), *comps.at("grounding_head"), tokenizer, timings) {}

  static std::map<std::string, std::unique_ptr<sam3::detail::Component>> load(const sam3::Manifest& m,
                                                                               const sam3::SafeTensors& w) {
    std::map<std::string, std::unique_ptr<sam3::detail::Component>> c;
    for (const char* name : {"image_encoder", "text_encoder", "grounding_head", "interactive_decoder",
                             "memory_encoder", "memory_attention", "mask_downsample"})
      c[name] = std::make_unique<sam3::detail::Component>(m, m.component(name), w);
    return c;
  }
  static std::map<std::string, const sam3::detail::Component*> pointers(
      const std::map<std::string, std::unique_ptr<sam3::detail::Component>>& c) {
    std::map<std::string, const sam3::detail::Component*> p;
    for (const auto& [name, comp] : c) p[name] = comp.get();
    return p;
  }
};

std::vector<float> logits(const std::string& bits) {
  std::vector<float> v(bits.size());
  for (std::size_t i = 0; i < bits.size(); ++i) v[i] = bits[i] == '1' ? 10.f : -10.f;
  return v;
}

json trace_json(const sam3::video::FrameTrace& t) {
  json dm = json::object(), hc = json::object();
  for (const auto& [d, ids] : t.det_matches) dm[std::to_string(d)] = ids;
  for (const auto& [id, d] : t.high_conf_matches) hc[std::to_string(id)] = d;
  return {{"frame", t.frame}, {"reverse", t.reverse}, {"phase", t.phase}, {"tracked", t.tracked},
          {"detections", t.detections}, {"scores", t.scores}, {"spawned", t.spawned}, {"matched", t.matched},
          {"det_matches", dm}, {"unmatched", t.unmatched}, {"empty", t.empty}, {"removed", t.removed},
          {"suppressed", t.suppressed}, {"occlusion_suppressed", t.occlusion_suppressed},
          {"reconditioned", t.reconditioned}, {"high_conf_matches", hc}};
}

int run_concept(const char* bundle, const std::string& frames_dir, const std::string& actions_path,
                const char* oracle_path) {
  Bundle b(bundle);
  const sam3::Manifest& m = b.manifest;
  sam3::video::TrackerModel& tracker = b.tracker;
  sam3::video::Detector& detector = b.detector;
  std::map<std::string, double>& timings = b.timings;
  auto reader = sam3::VideoReader::open(frames_dir);
  const int W = reader->width(), H = reader->height();
  json oracle = json::object();
  if (oracle_path) {
    std::ifstream in(oracle_path);
    oracle = json::parse(in);
  }
  sam3::DetectorConfig cfg = m.detector;
  if (oracle.contains("options"))
    sam3::video::apply_concept_options(cfg, oracle.at("options").get<std::map<std::string, double>>());
  std::map<int, std::shared_ptr<const sam3::video::FrameFeatures>> cache;
  auto features = [&](int f) {
    auto it = cache.find(f);
    if (it != cache.end()) return it->second;
    if (cache.size() > 2) cache.clear();
    auto ff = std::make_shared<const sam3::video::FrameFeatures>(tracker.encode_frame(reader->frame(f), true));
    cache[f] = ff;
    return ff;
  };
  sam3::video::SpillStore spill("");
  sam3::video::ConceptTracker ct(tracker, detector, cfg, reader->num_frames(), W, H, features,
                                 sam3::VideoMemory::Spill, &spill, timings);
  sam3::video::ConceptHooks hooks;
  if (oracle.contains("detections")) {
    hooks.detections = [&](int f) {
      sam3::video::Detections d;
      const json& all = oracle.at("detections");
      if (!all.contains(std::to_string(f))) return d;
      const json& j = all.at(std::to_string(f));
      d.scores = j.at("scores").get<std::vector<float>>();
      for (const auto& b : j.at("boxes")) d.boxes_xyxy.push_back(b.get<std::array<float, 4>>());
      for (const auto& mk : j.at("masks")) d.masks.push_back(logits(mk.get<std::string>()));
      return d;
    };
  }
  if (oracle.contains("truth")) {
    hooks.truth = [&](int f) {
      std::vector<std::vector<float>> t;
      for (const auto& mk : oracle.at("truth").at(std::to_string(f))) t.push_back(logits(mk.get<std::string>()));
      return t;
    };
  }
  ct.set_hooks(hooks);
  std::ifstream ain(actions_path);
  const json actions = json::parse(ain);
  std::map<int, std::map<int, json>> final_out;
  std::set<int> removed;
  json passes = json::array();
  auto record = [&](const sam3::VideoFrameResult& r) {
    auto& slot = final_out[r.frame];
    slot.clear();
    for (const sam3::VideoObject& o : r.objects)
      slot[o.obj_id] = {{"score", o.score}, {"box", o.box},
                        {"rle", sam3::rle_encode(o.mask.data(), r.height, r.width)}};
    return true;
  };
  for (const json& a : actions) {
    const std::string op = a.at("op");
    if (op == "add_prompt" && !a.contains("points")) {
      sam3::video::ConceptPromptSpec spec;
      spec.text = a.value("text", std::string());
      if (a.contains("boxes") && !a.at("boxes").empty()) {
        const auto b = a.at("boxes")[0].get<std::array<float, 4>>();
        const float x = b[0] / W, y = b[1] / H, bw = (b[2] - b[0]) / W, bh = (b[3] - b[1]) / H;
        spec.box_cxcywh = std::array<float, 4>{x + 0.5f * bw, y + 0.5f * bh, bw, bh};
        spec.box_positive = a.value("box_labels", std::vector<int>{1})[0] != 0;
        spec.box_frame = a.at("frame");
      }
      final_out.clear();
      removed.clear();
      record(ct.add_prompt(a.at("frame"), spec));
    } else if (op == "add_points" || (op == "add_prompt" && a.contains("points"))) {
      sam3::video::PointInputs pts;
      const auto labels = a.value("labels", std::vector<int>(a.at("points").size(), 1));
      std::size_t i = 0;
      const float S = static_cast<float>(m.image_size);
      for (const auto& p : a.at("points")) {  // video pixels -> input pixels, as VideoSession
        pts.coords.push_back(p[0].get<float>() / W * S);
        pts.coords.push_back(p[1].get<float>() / H * S);
        pts.labels.push_back(labels.at(i++) ? 1 : 0);
      }
      record(ct.add_points(a.at("frame"), a.at("obj_id"), pts));
      removed.erase(a.at("obj_id").get<int>());
    } else if (op == "propagate") {
      sam3::PropagateOptions o;
      const std::string d = a.value("direction", std::string("both"));
      o.direction = d == "forward" ? sam3::Direction::Forward
                    : d == "backward" ? sam3::Direction::Backward : sam3::Direction::Both;
      o.start = a.contains("start") && !a.at("start").is_null() ? a.at("start").get<int>() : -1;
      o.max_frames = a.contains("max_frames") && !a.at("max_frames").is_null() ? a.at("max_frames").get<int>() : -1;
      ct.propagate(o, record);
    } else if (op == "remove_object") {
      ct.remove_object(a.at("obj_id"));
      removed.insert(a.at("obj_id").get<int>());
    } else {
      throw sam3::Error("video_probe concept: unknown op " + op);
    }
  }
  json frames = json::object();
  for (const auto& [f, objs] : final_out) {
    json o = json::object();
    for (const auto& [id, v] : objs)
      if (!removed.count(id)) o[std::to_string(id)] = v;
    frames[std::to_string(f)] = o;
  }
  json trace = json::array();
  for (const auto& t : ct.trace()) trace.push_back(trace_json(t));
  std::printf("%s\n", json{{"frames", frames}, {"trace", trace}, {"width", W}, {"height", H}}.dump().c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    if (argc >= 5 && std::string(argv[1]) == "concept") {
      sam3::detail::default_thread_count();
      return run_concept(argv[2], argv[3], argv[4], argc >= 6 ? argv[5] : nullptr);
    }
    if (argc < 5 || std::string(argv[1]) != "detect")
      throw sam3::Error("usage: video_probe detect BUNDLE FRAME.png TEXT [cx cy w h label] [score nms]");
    sam3::detail::default_thread_count();
    Bundle b(argv[2]);
    const sam3::Manifest& m = b.manifest;
    sam3::video::TrackerModel& tracker = b.tracker;
    sam3::video::Detector& detector = b.detector;
    sam3::video::ConceptPromptSpec prompt;
    prompt.text = argv[4];
    int arg = 5;
    if (argc >= arg + 5) {
      prompt.box_cxcywh = std::array<float, 4>{std::stof(argv[arg]), std::stof(argv[arg + 1]),
                                               std::stof(argv[arg + 2]), std::stof(argv[arg + 3])};
      prompt.box_positive = std::atoi(argv[arg + 4]) != 0;
      prompt.box_frame = 0;
      arg += 5;
    }
    sam3::DetectorConfig cfg = m.detector;
    if (argc >= arg + 2) {
      cfg.score_threshold_detection = std::stof(argv[arg]);
      cfg.det_nms_thresh = std::stof(argv[arg + 1]);
    }
    detector.set_prompt(prompt);
    const sam3::video::FrameFeatures f = tracker.encode_frame(sam3::load_image(argv[3]), true);
    const sam3::video::Detections d = detector.detect(f, 0, true, cfg);
    nlohmann::json out = {{"scores", d.scores}, {"boxes_xyxy", d.boxes_xyxy}, {"masks", d.masks}};
    std::printf("%s\n", out.dump().c_str());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "video_probe: error: %s\n", e.what());
    return 1;
  }
}
