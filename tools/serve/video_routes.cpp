#include "video_routes.h"

#include <openssl/rand.h>
#include <stdlib.h>

#include <condition_variable>
#include <cstdio>
#include <deque>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>

#include "base64.h"
#include "predict.h"
#include "sam3/limits.h"
#include "sam3/video.h"
#include "shapes.h"

namespace sam3::serve {

using nlohmann::json;
namespace fs = std::filesystem;

// One client's video: its frames in a private folder, and the tracking session, made at
// the first prompt (a text prompt's threshold is a session option).
struct VideoEntry {
  std::string id, dir;
  int num_frames = 0, width = 0, height = 0;
  std::unique_ptr<VideoSession> session;
  std::string kind;                  // "text" or "points": what the session was made for
  std::string label = "AUTOLABEL_OBJECT";
  std::atomic<bool> prompted{false};  // a session exists (readable without the lock)
  std::mutex mu;                     // one operation at a time
  std::chrono::steady_clock::time_point last_used = std::chrono::steady_clock::now();
  ~VideoEntry() {
    session.reset();
    std::error_code ec;
    if (!dir.empty()) fs::remove_all(dir, ec);
  }
};

class VideoSessions {
 public:
  explicit VideoSessions(std::size_t max) : max_(max) {}
  // Keeps `e`; at the limit the least recently used session not in use is closed first,
  // and if all are in use this throws.
  void add(const std::shared_ptr<VideoEntry>& e) {
    std::lock_guard<std::mutex> lock(mu_);
    while (entries_.size() >= max_) {
      auto victim = entries_.end();
      for (auto it = entries_.begin(); it != entries_.end(); ++it)
        if (it->second.use_count() == 1 && (victim == entries_.end() || it->second->last_used < victim->second->last_used))
          victim = it;
      if (victim == entries_.end())
        throw RequestError("TOO_MANY_SESSIONS", "all " + std::to_string(max_) + " video sessions are in use");
      std::fprintf(stderr, "sam3 serve: closing idle video session %s (limit %zu)\n", victim->first.c_str(), max_);
      entries_.erase(victim);
    }
    entries_[e->id] = e;
  }
  std::shared_ptr<VideoEntry> get(const std::string& id) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = entries_.find(id);
    if (it == entries_.end()) throw RequestError("SESSION_NOT_FOUND", "no video session '" + id + "'");
    it->second->last_used = std::chrono::steady_clock::now();
    return it->second;
  }
  bool remove(const std::string& id) {
    std::shared_ptr<VideoEntry> gone;  // destroyed (frames deleted) outside the lock
    std::lock_guard<std::mutex> lock(mu_);
    auto it = entries_.find(id);
    if (it == entries_.end()) return false;
    gone = it->second;
    entries_.erase(it);
    return true;
  }
  std::size_t size() const {
    std::lock_guard<std::mutex> lock(mu_);
    return entries_.size();
  }

 private:
  const std::size_t max_;
  mutable std::mutex mu_;
  std::map<std::string, std::shared_ptr<VideoEntry>> entries_;
};

std::size_t open_sessions(const VideoSessions& s) { return s.size(); }

namespace {

std::string new_session_id() {
  unsigned char b[16];
  if (RAND_bytes(b, sizeof b) != 1) throw Error("no random bytes for a session id");
  static const char* hex = "0123456789abcdef";
  std::string id;
  for (unsigned char c : b) {
    id.push_back(hex[c >> 4]);
    id.push_back(hex[c & 15]);
  }
  return id;
}

int int_field(const json& body, const char* name, int fallback, bool required = false) {
  if (!body.contains(name) || body[name].is_null()) {
    if (required) throw RequestError("INVALID_REQUEST", std::string("\"") + name + "\" (an integer) is required");
    return fallback;
  }
  if (!body[name].is_number_integer()) throw RequestError("INVALID_REQUEST", std::string(name) + " must be an integer");
  const int64_t v = body[name].get<int64_t>();
  if (v < -1 || v > kMaxVideoFrames * 10LL) throw RequestError("INVALID_REQUEST", std::string(name) + " is out of range");
  return static_cast<int>(v);
}

std::string session_id(const json& body) {
  if (!body.contains("session_id") || !body["session_id"].is_string())
    throw RequestError("INVALID_REQUEST", "\"session_id\" (a string) is required");
  return body["session_id"].get<std::string>();
}

// The shapes of one frame's objects: a polygon per object with a mask, grouped by object id.
json frame_shapes(const VideoFrameResult& r, const std::string& label, double epsilon_factor) {
  json out = json::array();
  for (const auto& o : r.objects) {
    if (!o.present) continue;
    auto poly = mask_polygon(o.mask, r.width, r.height, epsilon_factor);
    if (poly.empty()) continue;
    out.push_back(make_shape(label, "polygon", poly, o.score, mask_rle(o.mask, r.width, r.height), o.obj_id));
  }
  return out;
}

// The init job: frames decoded and checked (PNG or JPEG, one size), written to a folder.
std::shared_ptr<VideoEntry> make_entry(const json& frames) {
  auto e = std::make_shared<VideoEntry>();
  e->id = new_session_id();
  std::string tmpl = (fs::temp_directory_path() / "sam3-serve-XXXXXX").string();
  if (!mkdtemp(tmpl.data())) throw Error("cannot make a folder for the frames in " + fs::temp_directory_path().string());
  e->dir = tmpl;
  for (size_t i = 0; i < frames.size(); ++i) {
    const std::string at = "frames[" + std::to_string(i) + "]";
    if (!frames[i].is_string()) throw RequestError("INVALID_REQUEST", at + " must be a data URI or base64 string");
    std::vector<uint8_t> bytes;
    Image img;
    try {
      bytes = decode_image_field(frames[i].get<std::string>());
      img = decode_image(bytes.data(), bytes.size(), at);
    } catch (const Error& ex) {
      throw RequestError("INVALID_IMAGE", at + ": " + ex.what());
    }
    if (i == 0) {
      e->width = img.width;
      e->height = img.height;
    } else if (img.width != e->width || img.height != e->height) {
      throw RequestError("INVALID_IMAGE", at + " is " + std::to_string(img.width) + "x" + std::to_string(img.height) +
                                              ", frame 0 is " + std::to_string(e->width) + "x" + std::to_string(e->height));
    }
    const bool png = bytes.size() > 4 && bytes[0] == 0x89 && bytes[1] == 'P';
    char name[32];
    std::snprintf(name, sizeof name, "/%05zu.%s", i, png ? "png" : "jpg");
    const std::string path = e->dir + name;
    FILE* f = std::fopen(path.c_str(), "wb");
    const bool ok = f && std::fwrite(bytes.data(), 1, bytes.size(), f) == bytes.size();
    if (f && std::fclose(f) != 0 && ok) throw Error("cannot write " + path);
    if (!ok) throw Error("cannot write " + path);
  }
  e->num_frames = static_cast<int>(frames.size());
  return e;
}

// A thread-safe queue of server-sent events from a propagation job to the HTTP thread.
struct EventChannel {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::string> events;
  bool closed = false;
  std::atomic<bool> cancelled{false};  // the client went away
  void push(const json& e) {
    {
      std::lock_guard<std::mutex> lock(mu);
      events.push_back("data: " + e.dump(-1, ' ', false, json::error_handler_t::replace) + "\n\n");
    }
    cv.notify_all();
  }
  void close() {
    {
      std::lock_guard<std::mutex> lock(mu);
      closed = true;
    }
    cv.notify_all();
  }
};

struct PropagateRequest {
  std::shared_ptr<VideoEntry> entry;
  PropagateOptions options;
  double epsilon_factor = 0.001;
};

// Runs the propagation under the entry's lock; `progress` after each frame (false: stop).
json propagate(PropagateRequest& p, const std::function<bool(int frame, int done, int total)>& progress,
               const std::function<void(int total)>& started) {
  std::lock_guard<std::mutex> lock(p.entry->mu);
  if (!p.entry->session) throw RequestError("INVALID_REQUEST", "no prompt in this session yet: POST /v1/video/prompt first");
  const int total = p.entry->session->frames_to_track(p.options);
  started(total);
  json results = json::object();
  int done = 0;
  p.entry->session->propagate(p.options, [&](const VideoFrameResult& r) {
    results[std::to_string(r.frame)] = {{"masks", frame_shapes(r, p.entry->label, p.epsilon_factor)}};
    return progress(r.frame, ++done, total);
  });
  return results;
}

PropagateRequest propagate_request(VideoSessions& sessions, const json& body) {
  PropagateRequest p;
  p.entry = sessions.get(session_id(body));
  if (!p.entry->prompted)  // checked again under the lock; answered here as JSON, not as an event
    throw RequestError("INVALID_REQUEST", "no prompt in this session yet: POST /v1/video/prompt first");
  const int start = int_field(body, "start_frame", -1), end = int_field(body, "end_frame", -1);
  p.options.direction = Direction::Forward;
  p.options.start = start;
  if (end >= 0) {
    if (start >= 0 && end < start) throw RequestError("INVALID_REQUEST", "end_frame is before start_frame");
    p.options.max_frames = start >= 0 ? end - start : end;
  }
  if (body.contains("params") && body["params"].is_object() && body["params"].contains("epsilon_factor") &&
      body["params"]["epsilon_factor"].is_number())
    p.epsilon_factor = body["params"]["epsilon_factor"].get<double>();
  return p;
}

}  // namespace

std::shared_ptr<VideoSessions> add_video_routes(httplib::Server& svr, Context& ctx) {
  auto store = std::make_shared<VideoSessions>(static_cast<std::size_t>(ctx.args.max_sessions));
  VideoSessions& sessions = *store;

  // Runs `job` on a worker within the timeout and answers with what it returns as "data"
  auto answer = [&ctx](httplib::Response& res, std::function<json()> job) {
    auto result = std::make_shared<json>();
    WorkQueue::Status st;
    try {
      st = ctx.work.run([job, result] { *result = job(); }, ctx.timeout);
    } catch (const RequestError& e) {
      return send(res, error_body(e.code, e.what()));
    } catch (const std::exception& e) {
      return send(res, error_body("INFERENCE_ERROR", e.what()));
    }
    if (st == WorkQueue::Status::Done) {
      ++ctx.served;
      return send(res, {{"success", true}, {"data", *result}});
    }
    if (st == WorkQueue::Status::TimedOut) {
      ++ctx.timed_out;
      return send(res, error_body("TIMEOUT", "the request took longer than " + std::to_string(ctx.args.timeout_s) + " s"));
    }
    ++ctx.rejected;
    send(res, st == WorkQueue::Status::Full ? queue_full_body() : error_body("SHUTTING_DOWN", "the server is stopping"), 503);
  };

  svr.Post("/v1/video/init", [&ctx, &sessions, answer](const httplib::Request& req, httplib::Response& res) {
    json body;
    if (!ctx.authorized(req, res) || !parse_body(req, res, ctx.args.model_id, body)) return;
    if (!body.contains("frames") || !body["frames"].is_array() || body["frames"].empty())
      return send(res, error_body("INVALID_REQUEST", "\"frames\" (a non-empty array of data URIs) is required"));
    if (body["frames"].size() > static_cast<size_t>(kMaxVideoFrames))
      return send(res, error_body("INVALID_REQUEST", "more than " + std::to_string(kMaxVideoFrames) + " frames"));
    auto frames = std::make_shared<json>(std::move(body["frames"]));
    answer(res, [frames, &sessions] {
      auto e = make_entry(*frames);
      sessions.add(e);
      return json{{"session_id", e->id}, {"num_frames", e->num_frames}, {"width", e->width}, {"height", e->height}};
    });
  });

  svr.Post("/v1/video/prompt", [&ctx, &sessions, answer](const httplib::Request& req, httplib::Response& res) {
    json body;
    if (!ctx.authorized(req, res) || !parse_body(req, res, ctx.args.model_id, body)) return;
    std::shared_ptr<VideoEntry> e;
    int frame = 0;
    std::string text;
    std::vector<Point> points;
    int obj_id = 1;
    float conf = -1;
    double eps = 0.001;
    try {
      e = sessions.get(session_id(body));
      frame = int_field(body, "frame_index", 0, true);
      if (frame < 0 || frame >= e->num_frames)
        throw RequestError("INVALID_REQUEST", "frame_index " + std::to_string(frame) + " is not in [0, " +
                                                  std::to_string(e->num_frames) + ")");
      if (body.contains("text_prompt") && !body["text_prompt"].is_null()) {
        if (!body["text_prompt"].is_string()) throw RequestError("INVALID_REQUEST", "text_prompt must be a string");
        text = body["text_prompt"].get<std::string>();
        if (text.size() > kMaxTextBytes) throw RequestError("INVALID_REQUEST", "text_prompt is too long");
      }
      if (body.contains("points") && !body["points"].is_null()) {
        const json& pts = body["points"];
        const json labels = body.value("point_labels", json::array());
        if (!pts.is_array() || !labels.is_array() || (!labels.empty() && labels.size() != pts.size()))
          throw RequestError("INVALID_REQUEST", "points is [[x/W, y/H], ...] with one point_labels entry each");
        if (pts.size() > kMaxVideoPoints) throw RequestError("INVALID_REQUEST", "too many points");
        for (size_t i = 0; i < pts.size(); ++i) {
          if (!pts[i].is_array() || pts[i].size() != 2 || !pts[i][0].is_number() || !pts[i][1].is_number())
            throw RequestError("INVALID_REQUEST", "points[" + std::to_string(i) + "] must be [x, y]");
          const double x = pts[i][0].get<double>(), y = pts[i][1].get<double>();
          if (!(x >= 0 && x <= 1 && y >= 0 && y <= 1))
            throw RequestError("INVALID_REQUEST", "points are normalised to [0, 1] (x/width, y/height)");
          const bool pos = labels.empty() || (labels[i].is_number_integer() && labels[i].get<int>() == 1);
          if (!labels.empty() && !(labels[i].is_number_integer() && (labels[i] == 0 || labels[i] == 1)))
            throw RequestError("INVALID_REQUEST", "point_labels are 1 or 0");
          points.push_back({static_cast<float>(x * e->width), static_cast<float>(y * e->height), pos});
        }
        obj_id = int_field(body, "obj_id", 1);
        if (obj_id < 0) throw RequestError("INVALID_REQUEST", "obj_id must be >= 0");
      }
      if (text.find_first_not_of(" \t\r\n") == std::string::npos) text.clear();
      if (text.empty() && points.empty()) throw RequestError("INVALID_REQUEST", "give text_prompt or points");
      if (!text.empty() && !points.empty()) throw RequestError("INVALID_REQUEST", "give text_prompt or points, not both");
      if (body.contains("params") && body["params"].is_object()) {
        const json& p = body["params"];
        if (p.contains("conf_threshold") && p["conf_threshold"].is_number()) conf = p["conf_threshold"].get<float>();
        if (p.contains("epsilon_factor") && p["epsilon_factor"].is_number()) eps = p["epsilon_factor"].get<double>();
        if (conf != -1 && !(conf >= 0 && conf <= 1)) throw RequestError("INVALID_REQUEST", "conf_threshold must be in [0, 1]");
      }
    } catch (const RequestError& ex) {
      return send(res, error_body(ex.code, ex.what()));
    }
    answer(res, [&ctx, e, frame, text, points, obj_id, conf, eps] {
      std::lock_guard<std::mutex> lock(e->mu);
      const std::string kind = text.empty() ? "points" : "text";
      if (!e->session || e->kind != kind || kind == "text") {
        // a text prompt starts over (the client resets between kinds too): its threshold
        // is a session option
        e->session.reset();
        VideoOptions o;
        if (conf >= 0) {
          o.concept_options["score_threshold_detection"] = conf;
          o.concept_options["new_det_thresh"] = conf;
        }
        e->prompted = false;
        e->session = std::make_unique<VideoSession>(ctx.model, e->dir, o);
        e->kind = kind;
      }
      VideoFrameResult r;
      if (kind == "text") {
        e->label = text;
        r = e->session->add_prompt(frame, {text, std::nullopt});
      } else {
        e->label = "AUTOLABEL_OBJECT";
        r = e->session->add_points(frame, obj_id, points);
      }
      e->prompted = true;
      return json{{"frame_index", frame}, {"masks", frame_shapes(r, e->label, eps)}};
    });
  });

  // The checked request of both propagate routes; nullptr after answering an error
  auto propagate_from = [&ctx, &sessions](const httplib::Request& req, httplib::Response& res) {
    std::shared_ptr<PropagateRequest> p;
    json body;
    if (!ctx.authorized(req, res) || !parse_body(req, res, ctx.args.model_id, body)) return p;
    try {
      p = std::make_shared<PropagateRequest>(propagate_request(sessions, body));
    } catch (const RequestError& ex) {
      send(res, error_body(ex.code, ex.what()));
    }
    return p;
  };

  svr.Post("/v1/video/propagate", [propagate_from, answer](const httplib::Request& req, httplib::Response& res) {
    auto p = propagate_from(req, res);
    if (!p) return;
    answer(res, [p] {
      return json{{"results", propagate(*p, [](int, int, int) { return true; }, [](int) {})}};
    });
  });

  // SSE: started, progress per frame, then completed with every frame's shapes (or error).
  // Runs as a worker job; a client that disconnects stops the propagation.
  svr.Post("/v1/video/propagate/stream", [&ctx, propagate_from](const httplib::Request& req, httplib::Response& res) {
    auto p = propagate_from(req, res);
    if (!p) return;
    auto ch = std::make_shared<EventChannel>();
    const WorkQueue::Status st = ctx.work.submit([p, ch, &ctx] {
      try {
        const int start = p->options.start;
        json results = propagate(
            *p,
            [&](int frame, int done, int total) {
              ch->push({{"type", "progress"}, {"current_frame", frame}, {"processed", done}, {"total", total},
                        {"total_frames", p->entry->num_frames}});
              return !ch->cancelled.load();
            },
            [&](int total) {
              ch->push({{"type", "started"}, {"total_frames", p->entry->num_frames},
                        {"start_frame_index", start < 0 ? 0 : start}, {"frames_to_track", total}});
            });
        ++ctx.served;
        ch->push({{"type", "completed"}, {"results", results}});
      } catch (const std::exception& e) {
        ch->push({{"type", "error"}, {"message", e.what()}});
      }
      ch->close();
    });
    if (st != WorkQueue::Status::Done) {
      ++ctx.rejected;
      return send(res, st == WorkQueue::Status::Full ? queue_full_body() : error_body("SHUTTING_DOWN", "the server is stopping"),
                  503);
    }
    res.set_header("Cache-Control", "no-cache");
    res.set_chunked_content_provider(
        "text/event-stream",
        [ch](size_t, httplib::DataSink& sink) {
          std::unique_lock<std::mutex> lock(ch->mu);
          ch->cv.wait(lock, [&] { return !ch->events.empty() || ch->closed; });
          while (!ch->events.empty()) {
            std::string e = std::move(ch->events.front());
            ch->events.pop_front();
            lock.unlock();
            if (!sink.write(e.data(), e.size())) {
              ch->cancelled = true;  // the client is gone: stop tracking
              return false;
            }
            lock.lock();
          }
          if (ch->closed) sink.done();
          return true;
        },
        [ch](bool) { ch->cancelled = true; });
  });

  svr.Post(R"(/v1/video/cleanup/([^/]+))", [&ctx, &sessions](const httplib::Request& req, httplib::Response& res) {
    if (!ctx.authorized(req, res)) return;
    const std::string id = req.matches[1];
    if (!sessions.remove(id)) return send(res, error_body("SESSION_NOT_FOUND", "no video session '" + id + "'"));
    send(res, {{"success", true}, {"data", {{"session_id", id}}}});
  });
  return store;
}

}  // namespace sam3::serve
