#include "track.h"

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>

#include "cli_util.h"
#include "outputs.h"
#include "progress.h"
#include "sam3/rle.h"
#include "sam3/sam3.h"
#include "sam3/video.h"
#include "sam3/video_reader.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace sam3::cli {
namespace {

// One step of a tracking session: the flags make a list of prompts then one
// propagation; --actions FILE gives any sequence (docs/video.md).
struct Action {
  std::string op;  // add_points | add_mask | add_prompt | propagate | remove_object | reset
  int frame = 0, obj_id = 1;
  std::string text;  // add_prompt
  std::vector<Point> points;
  std::optional<Box> box;
  std::string mask;
  PropagateOptions propagate;
};

// The last result of each object on each frame, compact (RLE).
struct Stored {
  float score;
  std::array<float, 4> box;
  std::string rle;
  uint64_t area;
};

Direction parse_direction(const std::string& d) {
  if (d == "forward") return Direction::Forward;
  if (d == "backward") return Direction::Backward;
  if (d == "both") return Direction::Both;
  throw Error("bad direction '" + d + "': expected forward, backward or both");
}

// Splits "...,id=K" off a prompt argument.
int take_id(std::vector<std::string>& parts, const std::string& arg) {
  int id = 1;
  if (!parts.empty() && parts.back().rfind("id=", 0) == 0) {
    id = integer(parts.back().substr(3), "object id in '" + arg + "'");
    parts.pop_back();
  }
  if (id < 1 || id > 255)
    throw Error("object id " + std::to_string(id) + " in '" + arg +
                "' is out of range: ids are 1..255 (they are the pixel values of masks/*.png)");
  return id;
}

// --text / --exemplar (and --box with --text): one concept prompt, then a propagation
std::vector<Action> concept_actions_from_flags(const TrackArgs& a) {
  if (!a.points.empty() || !a.masks.empty())
    throw Error("--point and --mask track given objects; --text/--exemplar find a concept: give one or the other "
                "(refinement clicks on concept objects: an --actions file, after a propagation)");
  std::vector<std::string> boxes = a.exemplars;
  boxes.insert(boxes.end(), a.boxes.begin(), a.boxes.end());
  if (boxes.size() > 1)
    throw Error("a concept prompt takes one exemplar box (as the official video model); got " +
                std::to_string(boxes.size()));
  Action x{"add_prompt"};
  x.text = a.text;
  x.frame = a.start >= 0 ? a.start : 0;
  if (!boxes.empty()) {
    auto p = split(boxes[0]);
    bool positive = true;
    if (p.size() == 6 && (p[5] == "neg" || p[5] == "pos")) {
      positive = p[5] == "pos";
      p.pop_back();
    }
    if (p.size() != 5) throw Error("bad exemplar box '" + boxes[0] + "': expected F,X0,Y0,X1,Y1[,neg]");
    x.frame = integer(p[0], "frame");
    x.box = Box{number(p[1], "box"), number(p[2], "box"), number(p[3], "box"), number(p[4], "box"), positive};
  }
  Action prop{"propagate"};
  prop.propagate = {parse_direction(a.direction), a.start, a.max_frames};
  return {x, prop};
}

std::vector<Action> actions_from_flags(const TrackArgs& a) {
  if (a.has_text || !a.exemplars.empty()) return concept_actions_from_flags(a);
  std::vector<Action> out;
  auto slot = [&](int frame, int id) -> Action& {
    for (Action& x : out)
      if (x.frame == frame && x.obj_id == id) return x;
    out.push_back(Action{"add_points", frame, id});
    return out.back();
  };
  for (const std::string& arg : a.points) {
    auto p = split(arg);
    const int id = take_id(p, arg);
    bool positive = true;
    if (p.size() == 4 && (p[3] == "neg" || p[3] == "pos")) {
      positive = p[3] == "pos";
      p.pop_back();
    }
    if (p.size() != 3) throw Error("bad point '" + arg + "': expected F,X,Y[,neg][,id=K]");
    Action& x = slot(integer(p[0], "frame"), id);
    if (!x.mask.empty()) throw Error("object " + std::to_string(id) + " has both a mask and points on frame " + p[0]);
    x.points.push_back(Point{number(p[1], "point"), number(p[2], "point"), positive});
  }
  for (const std::string& arg : a.boxes) {
    auto p = split(arg);
    const int id = take_id(p, arg);
    if (p.size() != 5) throw Error("bad box '" + arg + "': expected F,X0,Y0,X1,Y1[,id=K]");
    Action& x = slot(integer(p[0], "frame"), id);
    if (x.box) throw Error("object " + std::to_string(id) + " has two boxes on frame " + p[0]);
    if (!x.mask.empty()) throw Error("object " + std::to_string(id) + " has both a mask and a box on frame " + p[0]);
    x.box = Box{number(p[1], "box"), number(p[2], "box"), number(p[3], "box"), number(p[4], "box")};
  }
  for (const std::string& arg : a.masks) {
    auto p = split(arg);
    const int id = take_id(p, arg);
    if (p.size() != 2) throw Error("bad mask '" + arg + "': expected F,PNG[,id=K]");
    Action& x = slot(integer(p[0], "frame"), id);
    if (!x.points.empty() || x.box || !x.mask.empty())
      throw Error("object " + std::to_string(id) + " has more than one prompt kind on frame " + p[0]);
    x.op = "add_mask";
    x.mask = p[1];
  }
  if (out.empty()) throw Error("give a prompt: --text, --exemplar, --point, --box or --mask (or --actions FILE)");
  Action prop{"propagate"};
  prop.propagate = {parse_direction(a.direction), a.start, a.max_frames};
  out.push_back(prop);
  return out;
}

std::vector<Action> actions_from_file(const std::string& path) {
  json j;
  try {
    std::ifstream in(path);
    if (!in) throw Error("cannot open " + path);
    j = json::parse(in);
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    throw Error("cannot read actions " + path + ": " + e.what());
  }
  if (!j.is_array()) throw Error("actions " + path + ": expected a JSON list of actions");
  const fs::path base = fs::path(path).parent_path();
  std::vector<Action> out;
  try {
    for (const json& s : j) {
      Action a{s.at("op").get<std::string>()};
      a.frame = s.value("frame", 0);
      a.obj_id = s.value("obj_id", 1);
      // 1..255 (the pixel values of masks/*.png); concept objects are numbered from 0
      if (a.obj_id < 0 || a.obj_id > 255) throw Error("object ids are 0..255");
      if (a.op == "add_points") {
        const auto pts = s.value("points", std::vector<std::vector<float>>{});
        const auto labels = s.value("labels", std::vector<int>(pts.size(), 1));
        if (labels.size() != pts.size()) throw Error("add_points: one label per point");
        for (size_t i = 0; i < pts.size(); ++i) {
          if (pts[i].size() != 2) throw Error("add_points: points are [x, y]");
          a.points.push_back(Point{pts[i][0], pts[i][1], labels[i] != 0});
        }
        if (s.contains("box")) {
          const auto b = s.at("box").get<std::vector<float>>();
          if (b.size() != 4) throw Error("add_points: box is [x0, y0, x1, y1]");
          a.box = Box{b[0], b[1], b[2], b[3]};
        }
      } else if (a.op == "add_prompt") {
        a.text = s.value("text", std::string());
        const auto boxes = s.value("boxes", std::vector<std::vector<float>>{});
        if (boxes.size() > 1) throw Error("add_prompt: one exemplar box (as the official video model)");
        if (!boxes.empty()) {
          if (boxes[0].size() != 4) throw Error("add_prompt: boxes are [x0, y0, x1, y1]");
          const auto labels = s.value("box_labels", std::vector<int>{1});
          if (labels.size() != 1) throw Error("add_prompt: one label per box");
          a.box = Box{boxes[0][0], boxes[0][1], boxes[0][2], boxes[0][3], labels[0] != 0};
        }
      } else if (a.op == "add_mask") {
        a.mask = s.at("mask").get<std::string>();
        if (fs::path(a.mask).is_relative()) a.mask = (base / a.mask).string();
      } else if (a.op == "propagate") {
        a.propagate.direction = parse_direction(s.value("direction", std::string("both")));
        a.propagate.start = s.contains("start") && !s.at("start").is_null() ? s.at("start").get<int>() : -1;
        a.propagate.max_frames =
            s.contains("max_frames") && !s.at("max_frames").is_null() ? s.at("max_frames").get<int>() : -1;
      } else if (a.op != "remove_object" && a.op != "reset") {
        throw Error("unknown action '" + a.op + "'");
      }
      out.push_back(a);
    }
  } catch (const Error& e) {
    throw Error("actions " + path + ": " + e.what());
  } catch (const std::exception& e) {
    throw Error("actions " + path + ": " + e.what());
  }
  if (out.empty()) throw Error("actions " + path + ": no actions");
  return out;
}

std::vector<uint8_t> read_mask(const std::string& path) {
  Image m = load_image(path);
  std::vector<uint8_t> mask(static_cast<size_t>(m.width) * m.height);
  for (size_t i = 0; i < mask.size(); ++i)
    mask[i] = (m.rgb[3 * i] | m.rgb[3 * i + 1] | m.rgb[3 * i + 2]) != 0;
  if (m.width <= 0) throw Error("empty mask " + path);
  return mask;
}

// DAVIS-style palette: 0 background, then distinct colours per object id
std::vector<uint8_t> palette() {
  std::vector<uint8_t> p(256 * 3, 0);
  for (int i = 1; i < 256; ++i) {
    int r = 0, g = 0, b = 0, c = i;
    for (int j = 0; j < 8; ++j) {  // the VOC/DAVIS bit-interleaved colour map
      r |= ((c >> 0) & 1) << (7 - j);
      g |= ((c >> 1) & 1) << (7 - j);
      b |= ((c >> 2) & 1) << (7 - j);
      c >>= 3;
    }
    p[3 * i] = static_cast<uint8_t>(r), p[3 * i + 1] = static_cast<uint8_t>(g), p[3 * i + 2] = static_cast<uint8_t>(b);
  }
  return p;
}

// `concept`: the noun phrase when the objects come from a concept prompt (ids from 0,
// drawn as id + 1 in masks/*.png), null for clicked objects (ids 1..255 as given)
void write_results(const fs::path& dir, const TrackArgs& a, VideoReader& reader,
                   const std::map<int, std::map<int, Stored>>& frames, const std::set<int>& ids,
                   const std::optional<std::string>& concept) {
  const int offset = concept ? 1 : 0;
  const int n = reader.num_frames(), W = reader.width(), H = reader.height();
  fs::create_directories(dir / "masks");
  if (a.overlay) fs::create_directories(dir / "overlay");
  const std::vector<uint8_t> pal = palette();
  // result.json is written as it is built: a tree of every frame's RLE would take a
  // multiple of the file's size in RAM on a long video
  std::ofstream json_out(dir / "result.json");
  json video = {{"path", a.video}, {"width", W}, {"height", H}, {"num_frames", n}};
  json_out << "{\"video\": " << video.dump() << ",\n \"bbox_format\": \"xywh pixels\",\n \"objects\": [";
  bool first_object = true;
  // the same tracks again in the SA-Co/VEval (YTVIS-like) layout, written after "objects"
  const std::string phrase = concept ? (concept->empty() ? std::string("visual") : *concept) : "object";
  std::string annotations;
  for (int id : ids) {
    std::string segs, boxes, areas, scores;
    double sum = 0;
    int count = 0;
    for (int f = 0; f < n; ++f) {
      const char* sep = f ? ", " : "";
      auto fit = frames.find(f);
      const Stored* s = nullptr;
      if (fit != frames.end() && fit->second.count(id)) s = &fit->second.at(id);
      if (!s || s->area == 0) {
        for (std::string* v : {&segs, &boxes, &areas, &scores}) *v += std::string(sep) + "null";
        continue;
      }
      segs += sep + json{{"size", {H, W}}, {"counts", s->rle}}.dump();
      boxes += sep + json({s->box[0], s->box[1], s->box[2] - s->box[0], s->box[3] - s->box[1]}).dump();
      areas += sep + std::to_string(s->area);
      scores += sep + json(s->score).dump();
      sum += s->score;
      ++count;
    }
    const std::string score = json(count ? sum / count : 0.0).dump();
    json_out << (first_object ? "\n  " : ",\n  ") << "{\"id\": " << id << ", \"score\": " << score
             << ",\n   \"segmentations\": [" << segs << "],\n   \"bboxes\": [" << boxes << "],\n   \"areas\": ["
             << areas << "],\n   \"scores\": [" << scores << "]}";
    annotations += std::string(first_object ? "\n  " : ",\n  ") + "{\"id\": " + std::to_string(id + 1) +
                   ", \"obj_id\": " + std::to_string(id) + ", \"video_id\": 1, \"category_id\": 1, \"noun_phrase\": " +
                   json(phrase).dump() + ", \"iscrowd\": 0, \"score\": " + score + ",\n   \"segmentations\": [" +
                   segs + "],\n   \"bboxes\": [" + boxes + "],\n   \"areas\": [" + areas + "]}";
    first_object = false;
  }
  json veval_video = {{"id", 1}, {"video_name", fs::path(a.video).filename().string()}, {"width", W},
                      {"height", H}, {"length", n}};
  json_out << "],\n \"videos\": [" << veval_video.dump() << "],\n \"categories\": ["
           << json{{"id", 1}, {"name", phrase}}.dump() << "],\n \"video_np_pairs\": ["
           << json{{"video_id", 1}, {"noun_phrase", phrase}, {"num_masklets", ids.size()}}.dump()
           << "],\n \"annotations\": [" << annotations << "]}\n";
  json_out.close();
  if (!json_out.good()) throw Error("cannot write " + (dir / "result.json").string());
  for (int f = 0; f < n; ++f) {
    std::vector<uint8_t> index(static_cast<size_t>(W) * H, 0);
    auto fit = frames.find(f);
    if (fit != frames.end())
      for (const auto& [id, s] : fit->second) {
        if (!ids.count(id) || s.area == 0 || id + offset > 255) continue;
        const std::vector<uint8_t> m = rle_decode(s.rle, H, W);
        for (size_t i = 0; i < m.size(); ++i)
          if (m[i]) index[i] = static_cast<uint8_t>(id + offset);
      }
    char name[32];
    std::snprintf(name, sizeof name, "%05d", f);
    save_png_indexed((dir / "masks" / (std::string(name) + ".png")).string(), W, H, index.data(), pal);
    if (a.overlay) {
      Image img = reader.frame(f);
      for (size_t i = 0; i < index.size(); ++i)
        if (index[i])
          for (int c = 0; c < 3; ++c)
            img.rgb[3 * i + c] = static_cast<uint8_t>((img.rgb[3 * i + c] + pal[3 * index[i] + c] + 1) / 2);
      save_jpeg((dir / "overlay" / (std::string(name) + ".jpg")).string(), W, H, img.rgb.data());
    }
  }
}

}  // namespace

CLI::App* add_track_command(CLI::App& app, TrackArgs& a) {
  auto* t = app.add_subcommand("track", "track objects through a video from clicks, boxes or masks, or every "
                                         "instance of a text or exemplar (concept tracking)");
  t->add_option("--bundle", a.bundle, "bundle directory (sam3-tvm compile --out)")->required();
  t->add_option("--video", a.video, "folder of PNG/JPEG frames named by number, or a video file")->required();
  t->add_option("--point", a.points, "F,X,Y[,neg][,id=K]: a click on frame F (video pixels) for object K (default 1)");
  t->add_option("--box", a.boxes, "F,X0,Y0,X1,Y1[,id=K]: a box on frame F for object K");
  t->add_option("--mask", a.masks, "F,PNG[,id=K]: a mask (non-zero pixels, video size) on frame F for object K");
  t->add_option("--text", a.text, "concept tracking: find and track every instance of this text")
      ->each([&a](const std::string&) { a.has_text = true; });
  t->add_option("--exemplar", a.exemplars, "F,X0,Y0,X1,Y1[,neg]: concept tracking from an exemplar box on frame F "
                "(with or without --text; with --text, --box means the same)");
  t->add_option("--det-threshold", a.det_threshold,
                "concept: keep detections scoring above this (score_threshold_detection; default: the bundle's)");
  t->add_option("--new-det-threshold", a.new_det_threshold,
                "concept: a detection starts a new object above this (new_det_thresh; default: the bundle's)");
  t->add_option("--set", a.options, "NAME=VALUE: any other concept-tracking option by its official name "
                "(docs/video.md), e.g. hotstart_delay=0");
  t->add_option("--actions", a.actions, "JSON list of actions (prompts, propagations, removals; docs/video.md) "
                                        "instead of the prompt flags");
  t->add_option("--direction", a.direction, "forward, backward or both (forward first)")->default_val("both");
  t->add_option("--start", a.start, "first frame (default: the earliest prompted frame)");
  t->add_option("--max-frames", a.max_frames, "frames to track after --start in each direction (default: all)");
  t->add_flag("--overlay", a.overlay, "also write overlay/NNNNN.jpg");
  t->add_option("--memory", a.memory, "tracker data no running step can use: spill (to a temporary file; "
                "RAM stays bounded), drop (no disk; later refinements may differ) or all (kept in RAM)")
      ->default_val("spill");
  t->add_option("--out", a.out_dir, "output directory")->required();
  t->add_flag("--verbose,-v", a.verbose, "print the time per stage");
  t->add_option("--device", a.device, "cpu or cuda; must match the bundle")->default_val("cpu");
  return t;
}

int run_track(const TrackArgs& a) {
  auto t0 = std::chrono::steady_clock::now();
  if (!a.actions.empty() && (!a.points.empty() || !a.boxes.empty() || !a.masks.empty() || a.has_text ||
                             !a.exemplars.empty()))
    throw Error("--actions replaces --text/--exemplar/--point/--box/--mask; give one or the other");
  std::vector<Action> actions = a.actions.empty() ? actions_from_flags(a) : actions_from_file(a.actions);
  VideoOptions options;
  if (a.memory == "spill") options.memory = VideoMemory::Spill;
  else if (a.memory == "drop") options.memory = VideoMemory::Drop;
  else if (a.memory == "all") options.memory = VideoMemory::KeepAll;
  else throw Error("bad --memory '" + a.memory + "': expected spill, drop or all");
  if (a.det_threshold != -1) options.concept_options["score_threshold_detection"] = a.det_threshold;
  if (a.new_det_threshold != -1) options.concept_options["new_det_thresh"] = a.new_det_threshold;
  for (const std::string& kv : a.options) {
    const auto eq = kv.find('=');
    if (eq == std::string::npos || eq == 0) throw Error("bad --set '" + kv + "': expected NAME=VALUE");
    options.concept_options[kv.substr(0, eq)] = number(kv.substr(eq + 1), "--set " + kv.substr(0, eq));
  }
  Model model(a.bundle, a.device);
  VideoSession session(model, a.video, options);
  const double load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::fprintf(stderr, "video %s: %d frames, %dx%d\n", a.video.c_str(), session.num_frames(),
               session.width(), session.height());
  std::map<int, std::map<int, Stored>> frames;
  std::set<int> removed;
  std::optional<std::string> concept;  // the noun phrase while concept tracking
  std::vector<double> frame_seconds;  // per delivered frame (--verbose)
  double prompt_seconds = 0;          // concept prompts (each runs a frame)
  auto store = [&](const VideoFrameResult& r) {
    auto& slot = frames[r.frame];
    slot.clear();
    for (const VideoObject& o : r.objects) {
      uint64_t area = 0;
      for (uint8_t v : o.mask) area += v;
      slot[o.obj_id] = Stored{o.score, o.box, rle_encode(o.mask.data(), r.height, r.width), area};
    }
  };
  for (const Action& x : actions) {
    if (x.op == "add_prompt") {
      frames.clear();
      removed.clear();
      concept = x.text;
      const auto t_prompt = std::chrono::steady_clock::now();
      store(session.add_prompt(x.frame, VideoConceptPrompt{x.text, x.box}));
      prompt_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t_prompt).count();
    } else if (x.op == "add_points") {
      if (!concept && x.obj_id < 1) throw Error("object ids of clicked objects are 1..255");
      session.add_points(x.frame, x.obj_id, x.points, x.box);
      removed.erase(x.obj_id);
    } else if (x.op == "add_mask") {
      if (x.obj_id < 1) throw Error("object ids of clicked objects are 1..255");
      session.add_mask(x.frame, x.obj_id, read_mask(x.mask));
      removed.erase(x.obj_id);
    } else if (x.op == "propagate") {
      Progress progress("tracking", "frames", session.frames_to_track(x.propagate));
      auto last = std::chrono::steady_clock::now();
      session.propagate(x.propagate, [&](const VideoFrameResult& r) {
        const auto now = std::chrono::steady_clock::now();
        frame_seconds.push_back(std::chrono::duration<double>(now - last).count());
        last = now;
        store(r);
        progress.step();
        return true;
      });
      progress.finish();
    } else if (x.op == "remove_object") {
      session.remove_object(x.obj_id);
      removed.insert(x.obj_id);
    } else if (x.op == "reset") {
      session.reset();
      frames.clear();
      concept.reset();
    }
  }
  std::set<int> ids;
  for (const auto& [f, objs] : frames)
    for (const auto& kv : objs)
      if (!removed.count(kv.first)) ids.insert(kv.first);
  const fs::path out(a.out_dir);
  // a staging folder moved into place at the end: a failed run leaves nothing behind
  write_staged(a.out_dir, [&](const std::string& dir) {
    auto reader = VideoReader::open(a.video);
    write_results(dir, a, *reader, frames, ids, concept);
  });
  std::printf("%zu object(s), %zu frame(s); wrote %s\n", ids.size(), frames.size(),
              (out / "result.json").string().c_str());
  if (a.verbose) {
    std::fprintf(stderr, "  %-18s %8d\n", "threads", model.num_threads());
    std::fprintf(stderr, "  %-18s %8.1f ms\n", "load", load_s * 1e3);
    for (const auto& [stage, s] : session.timings())
      std::fprintf(stderr, "  %-18s %8.1f ms\n", stage.c_str(), s * 1e3);
    std::fprintf(stderr, "prompt_seconds %.3f\n", prompt_seconds);
    std::fprintf(stderr, "frame_seconds");
    for (double v : frame_seconds) std::fprintf(stderr, " %.3f", v);
    std::fprintf(stderr, "\n");
    const VideoMemoryStats m = session.memory_stats();
    std::fprintf(stderr, "  %-18s %8.1f KB in RAM (%zu frames with memory), %.1f MB spilled\n",
                 "tracker memory", m.memory_bytes / 1024.0, m.frames_with_memory,
                 m.spilled_bytes / 1048576.0);
  }
  return 0;
}

}  // namespace sam3::cli
