// The two VideoReader implementations behind VideoReader::open, and helpers
// they share.
#pragma once

#include <memory>
#include <string>

#include "sam3/video_reader.h"

namespace sam3::video {

// A folder of PNG/JPEG frames (video_reader.cpp).
std::unique_ptr<VideoReader> open_folder(const std::string& dir);

// A video file, through FFmpeg (ffmpeg_reader.cpp).
std::unique_ptr<VideoReader> open_video_file(const std::string& path);

// Throws the out-of-range error for frame(index) of a `count`-frame source.
void check_frame_index(int index, int count, const std::string& path);

// "frame 3 of PATH is 40x30, frame 0 is 48x32" when the sizes differ.
void check_frame_size(int index, const std::string& what, int w, int h, int w0, int h0);

}  // namespace sam3::video
