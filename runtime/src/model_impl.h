// Internals of sam3::Model shared with the video session (runtime/src/video/).
#pragma once

#include <chrono>
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

// Adds the seconds from construction to destruction to out[name].
class Timer {
 public:
  Timer(std::map<std::string, double>& out, std::string name, bool accumulate = false)
      : out_(out), name_(std::move(name)), accumulate_(accumulate) {}
  ~Timer() {
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
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
