// Frames of a video, decoded on demand: a folder of PNG/JPEG frames or a video
// file (FFmpeg).
//
// A folder is read the way the official loader reads one
// (sam3/model/io_utils.py, load_video_frames_from_image_folder): the files whose
// lowercased extension is .jpg .jpeg .png .bmp .tiff or .webp, ordered by the
// integer value of their stem when every stem is a Python int() ("7", "007",
// "+3", " 5", "-1", "1_000"), else by name (byte order, as Python sorts str).
// Only PNG and JPEG can be decoded here, so a folder holding .bmp/.tiff/.webp
// frames is refused when it is opened. Frames are sam3::load_image's pixels,
// i.e. Pillow's Image.open(p).convert("RGB").
//
// A video file (.mp4 .mov .avi .mkv .webm, any case) is demuxed once at open to
// count its frames exactly (one per packet of the best video stream, in
// presentation order); frame(i) decodes forward from the last frame returned or
// seeks to the keyframe before frame i. Frames are converted to RGB24 at their
// own size by libswscale (accurate rounding, full chroma, bit-exact mode), so
// RGB-native codecs (FFV1 bgr0/gbrp, PNG) come back losslessly.
//
// Nothing holds more than the current frame decoded. Every failure throws
// sam3::Error naming the path; FFmpeg's own logging is silenced (process-wide,
// av_log_set_level(AV_LOG_QUIET), on the first video file opened). A reader is
// not thread-safe: use one per thread.
#pragma once

#include <memory>
#include <string>

#include "sam3/image.h"

namespace sam3 {

class VideoReader {
 public:
  // `path`: a folder of frames or a video file (.mp4 .mov .avi .mkv .webm, any case).
  static std::unique_ptr<VideoReader> open(const std::string& path);
  virtual ~VideoReader() = default;
  virtual int num_frames() const = 0;
  virtual int width() const = 0;  // of frame 0
  virtual int height() const = 0;
  // Frame `index` (0-based) as RGB8; throws sam3::Error if index is out of
  // range, the frame cannot be decoded, or its size differs from frame 0's.
  virtual Image frame(int index) = 0;
  // e.g. "folder of 24 PNG/JPEG frames" / "H.264 video, 24 frames, 25 fps"
  virtual std::string describe() const = 0;
};

}  // namespace sam3
