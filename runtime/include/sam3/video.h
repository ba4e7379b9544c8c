// sam3::VideoSession: track objects through a video from clicks, boxes or masks, with
// SAM 3's tracker (the official Sam3TrackerPredictor's logic; docs/video.md).
//
//   sam3::Model model("bundles/full");
//   sam3::VideoSession video(model, "clip.mp4");          // or a folder of frames
//   video.add_box(0, /*obj_id=*/1, {40, 60, 120, 180});
//   video.add_points(0, 2, {{300, 120}, {310, 90, false}});
//   video.propagate({}, [](const sam3::VideoFrameResult& r) {
//     for (const auto& o : r.objects) { /* o.obj_id, o.mask, o.box, o.score */ }
//     return true;  // false stops the propagation
//   });
//
// Frames are decoded when needed and never all held decoded; the session keeps the
// tracker memory the official selection can still use (docs/video.md, "Memory").
// Every failure throws sam3::Error. One session is used from one thread at a time;
// independent sessions on one Model may run in parallel threads (tests/python/test_threads.py).
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "sam3/sam3.h"

namespace sam3 {

struct VideoObject {
  int obj_id = 0;
  bool present = false;            // non-empty mask (before the non-overlap step)
  float score = 0;                 // the tracker's object score, sigmoid(logit)
  std::array<float, 4> box{};      // x0, y0, x1 (exclusive), y1 in video pixels; 0 if absent
  std::vector<uint8_t> mask;       // width*height, 0/1, row-major; objects do not overlap
};

struct VideoFrameResult {
  int frame = 0;
  int width = 0, height = 0;
  std::vector<VideoObject> objects;  // ascending obj_id
};

enum class Direction { Forward, Backward, Both };

struct PropagateOptions {
  Direction direction = Direction::Both;
  int start = -1;       // first frame; -1: the earliest frame with a prompt
  int max_frames = -1;  // frames tracked after `start` in each direction; -1: to the end
};

// What a session does with tracker data no step of the running propagation can use
// (docs/video.md, "Memory"). Spill and KeepAll give the official results in every flow.
enum class VideoMemory {
  Spill,    // move it to an unlinked temporary file (default): RAM stays bounded
  Drop,     // forget it: RAM bounded, no disk; a later propagation or refinement that
            // would have used it runs without it
  KeepAll,  // keep everything in RAM (grows with the video, as the official predictor)
};

struct VideoOptions {
  VideoMemory memory = VideoMemory::Spill;
  std::string spill_dir;  // "" : $TMPDIR or /tmp
  // Concept tracking's thresholds and switches, by the official model's attribute names
  // (score_threshold_detection, new_det_thresh, det_nms_thresh, hotstart_delay, ...;
  // docs/video.md lists them); the bundle's values otherwise. Checked when the session
  // is made: unknown names and out-of-range values throw.
  std::map<std::string, double> concept_options;
};

// A concept to find and track on every frame: a text, one exemplar box on the prompt's
// frame (video pixels; positive: "things like this", negative: "not like this"), or both.
struct VideoConceptPrompt {
  std::string text;
  std::optional<Box> box;
};

// What the session holds (see docs/video.md).
struct VideoMemoryStats {
  std::size_t frames_with_memory = 0;  // frames whose spatial memory is in RAM
  std::size_t memory_bytes = 0;        // spatial memories, masks and pointers in RAM
  std::size_t spilled_bytes = 0;       // written to the spill file so far
  std::size_t cached_feature_frames = 0;
};

class VideoSession {
 public:
  // `video`: a folder of PNG/JPEG frames named by number, or a video file
  // (.mp4 .mov .avi .mkv .webm). The model must outlive the session.
  VideoSession(Model& model, const std::string& video, const VideoOptions& options = {});
  ~VideoSession();
  VideoSession(const VideoSession&) = delete;
  VideoSession& operator=(const VideoSession&) = delete;

  int num_frames() const;
  int width() const;
  int height() const;

  // Prompts on one frame for one object (a new id adds an object). Each call replaces the
  // object's earlier clicks on that frame, as the official predictor does; a box comes
  // first (labels 2, 3), then the points. Coordinates are video pixels. Returns the
  // frame's masks after the prompt. On a concept-tracking session (add_prompt) clicks
  // (no box) refine a found object, or add one, on a frame that has outputs; the next
  // propagate re-tracks the clicked objects only. add_mask is for click sessions only.
  VideoFrameResult add_points(int frame, int obj_id, const std::vector<Point>& points,
                              const std::optional<Box>& box = std::nullopt);
  VideoFrameResult add_box(int frame, int obj_id, const Box& box);
  // mask: width*height bytes (non-zero = object), at the video's size.
  VideoFrameResult add_mask(int frame, int obj_id, const std::vector<uint8_t>& mask);

  // Concept tracking (docs/video.md): starts over (every object and prompt is dropped),
  // detects the concept on `frame` and returns what was found there; propagate() then
  // detects and tracks it through the video, with new ids for new instances. Object
  // scores are detection scores. Outputs of a propagation come hotstart_delay frames
  // late (the official delay that lets spurious objects be removed before they show).
  VideoFrameResult add_prompt(int frame, const VideoConceptPrompt& prompt);

  // Tracks every object through the frames in `options`; `on_frame` gets each frame's
  // result in processing order (Both: forward first, then backward from `start`) and
  // may return false to stop.
  void propagate(const PropagateOptions& options,
                 const std::function<bool(const VideoFrameResult&)>& on_frame);

  // How many frame results propagate(options) will deliver (for progress reports).
  int frames_to_track(const PropagateOptions& options) const;

  void remove_object(int obj_id);  // throws for an id the session does not have
  void reset();                    // forget every object and prompt
  std::vector<int> object_ids() const;

  // Seconds per stage over the session so far (decode, image_encoder, memory_attention, ...).
  const std::map<std::string, double>& timings() const;
  VideoMemoryStats memory_stats() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace sam3
