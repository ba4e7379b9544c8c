// The runtime's input limits (docs/reliability.md, "Limits"). Each exceeded limit is one
// sam3::Error naming it; no sensible input reaches them.
#pragma once
#include <cstddef>
#include <cstdint>

namespace sam3 {

// Pixels of an image or a video frame: Pillow's own refusal threshold
// (2 * Image.MAX_IMAGE_PIXELS); a hostile header must not request gigabytes.
constexpr uint64_t kMaxImagePixels = 2ull * 89478485ull;
// Bytes of a text prompt (UTF-8). The model reads at most 30 tokens (context length 32),
// which even 30 long words stay far below.
constexpr std::size_t kMaxTextBytes = 4096;
// Frames of a video (a folder of frames or a video file).
constexpr int kMaxVideoFrames = 100000;
// Objects in one video session (clicked objects, or objects found by concept tracking;
// the latter is also bounded by the detector's max_num_objects).
constexpr int kMaxVideoObjects = 1000;
// Points in one add_points call (the tracker uses at most 16 of them, the official
// first-and-last selection, like the official predictor).
constexpr int kMaxVideoPoints = 256;
// Image prompts: exemplar boxes and points are bounded by the bundle (manifest
// max_boxes, 4; max_points, 16, where a box counts as two points).

}  // namespace sam3
