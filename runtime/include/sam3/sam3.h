// sam3: run a compiled SAM 3 bundle (see docs/design.md) from C++.
//
//   sam3::Model model("bundles/full");                 // load once
//   sam3::ImageState img = model.encode(sam3::load_image("photo.jpg"));
//   auto found = model.segment(img, {.text = "red car"});        // concept prompt
//   auto clicked = model.segment_interactive(img, {.points = {{120, 80}}});
//
// Every failure throws sam3::Error with a message; nothing aborts the process.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "sam3/error.h"
#include "sam3/image.h"
#include "sam3/limits.h"
#include "sam3/manifest.h"

namespace sam3 {

struct Box {  // pixel coordinates of the original image, x0 < x1, y0 < y1
  float x0 = 0, y0 = 0, x1 = 0, y1 = 0;
  bool positive = true;
};

struct Point {  // pixel coordinates of the original image
  float x = 0, y = 0;
  bool positive = true;
};

struct ConceptPrompt {
  std::string text;          // may be empty when boxes are given ("visual", as upstream)
  std::vector<Box> boxes;    // exemplar boxes, +/-; at most manifest().max_boxes
  float threshold = 0.5f;    // on sigmoid(logit) * sigmoid(presence)
};

struct InteractivePrompt {
  std::vector<Point> points;
  std::optional<Box> box;
  std::vector<float> mask_input;  // optional previous low-res logits (mask_size^2)
  bool multimask = true;          // best of 3 candidate masks, else the single-mask output
  int max_hole_area = 256;        // fill background holes up to this area (low-res px), 0 = off
};

struct Instance {
  float score = 0;                   // concept: detection score; interactive: predicted IoU
  std::array<float, 4> box{};        // x0, y0, x1, y1 in pixels
  int width = 0, height = 0;         // mask size = original image size
  std::vector<uint8_t> mask;         // width*height, 0/1, row-major
  std::vector<float> low_res_logits; // interactive only: feed back as mask_input
};

// Encoded image: the image encoder's outputs, reusable across prompts.
class ImageState {
 public:
  int width() const { return width_; }
  int height() const { return height_; }

 private:
  friend class Model;
  struct Impl;
  std::shared_ptr<Impl> impl_;
  int width_ = 0, height_ = 0;
};

class VideoSession;

// Threads: one Model may be used from many threads at once; every call gives the
// result it gives alone (tests/python/test_threads.py). Each running call takes a VM of
// its own; at most cores / TVM_NUM_THREADS component runs execute at once (one by
// default: the kernels already use every core; SAM3_CONCURRENT_RUNS overrides), the
// host work around them overlaps. Measured on 2 cores (tiny bundle): 2 threads give
// 1.18x the throughput of 1 with the default kernel threads, 1.85x with
// TVM_NUM_THREADS=1. timings() is not synchronised: read it when no call is running.
class Model {
 public:
  // `device`: "cpu" (default), "cuda" or "metal"; it must be the device the bundle
  // was compiled for (manifest target.device). For "cuda" the TVM wheel's
  // libtvm_runtime_cuda.so is loaded; without a GPU or driver this throws
  // "CUDA could not be initialised: ...".
  explicit Model(const std::string& bundle_dir, const std::string& device = "cpu");
  ~Model();
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  ImageState encode(const Image& image);
  std::vector<Instance> segment(const ImageState& image, const ConceptPrompt& prompt);
  std::vector<Instance> segment_interactive(const ImageState& image, const InteractivePrompt& prompt);

  const Manifest& manifest() const;
  // Seconds spent per stage by the last calls (preprocess, image_encoder, tokenize, ...).
  const std::map<std::string, double>& timings() const;
  // Threads TVM's kernels run on: TVM_NUM_THREADS, else every logical CPU.
  int num_threads() const;

 private:
  friend class VideoSession;  // runs the tracker's components (sam3/video.h)
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace sam3
