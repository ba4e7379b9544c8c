// Internals of sam3::Model shared with the video session (runtime/src/video/).
#pragma once

#include <chrono>
#include <mutex>
#include <map>
#include <memory>
#include <string>

#include "component.h"
#include "sam3/sam3.h"
#include "sam3/tokenizer.h"

namespace sam3 {

struct ImageState::Impl {
  std::vector<detail::ffi::Tensor> feats;  // fpn0 fpn1 fpn2 trk_hr0 trk_hr1 trk_embed
};

struct Model::Impl {
  Manifest manifest;
  std::unique_ptr<Tokenizer> tokenizer;
  std::map<std::string, std::unique_ptr<detail::Component>> components;
  std::map<std::string, double> timings;

  const detail::Component& get(const std::string& name) const {
    auto it = components.find(name);
    if (it == components.end()) throw Error("bundle has no component " + name);
    return *it->second;
  }
};

namespace detail {

// Prompts must lie on the picture (`what`: "image" or "frame", for the message).
inline void check_box(const Box& b, int w, int h, const char* what) {
  if (!(b.x0 >= 0 && b.y0 >= 0 && b.x1 <= w && b.y1 <= h && b.x0 < b.x1 && b.y0 < b.y1))
    throw Error("box (" + std::to_string(b.x0) + "," + std::to_string(b.y0) + "," +
                std::to_string(b.x1) + "," + std::to_string(b.y1) + ") is empty or outside the " +
                std::to_string(w) + "x" + std::to_string(h) + " " + what);
}

inline void check_point(const Point& p, int w, int h, const char* what) {
  if (!(p.x >= 0 && p.y >= 0 && p.x <= w && p.y <= h))
    throw Error("point (" + std::to_string(p.x) + "," + std::to_string(p.y) + ") is outside the " +
                std::to_string(w) + "x" + std::to_string(h) + " " + what);
}

// Adds the seconds from construction to destruction to out[name].
class Timer {
 public:
  Timer(std::map<std::string, double>& out, std::string name, bool accumulate = false)
      : out_(out), name_(std::move(name)), accumulate_(accumulate) {}
  ~Timer() {
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
    // calls on one Model may run in many threads (sam3.h); the stage table is shared
    static std::mutex mu;
    std::lock_guard<std::mutex> lock(mu);
    out_[name_] = accumulate_ ? out_[name_] + s : s;
  }

 private:
  std::map<std::string, double>& out_;
  std::string name_;
  bool accumulate_;
  std::chrono::steady_clock::time_point t0_ = std::chrono::steady_clock::now();
};

}  // namespace detail
}  // namespace sam3
