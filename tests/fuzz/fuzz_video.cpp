// Opening a video container (sam3::VideoReader::open on a file, FFmpeg underneath) and
// decoding its first and last frames: the first input byte picks the extension, the rest
// is the file. Frames or a sam3::Error, never a crash, a leak or a hang.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "fuzz_util.h"
#include "sam3/error.h"
#include "sam3/video_reader.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  static const char* kExt[] = {".mp4", ".mkv", ".avi", ".mov", ".webm"};
  const std::string path = fuzz::scratch() + "/v" + kExt[data[0] % 5];
  fuzz::write_file(path, data + 1, size - 1);
  try {
    auto r = sam3::VideoReader::open(path);
    const int n = r->num_frames();
    if (n <= 0) abort();
    for (int i : {0, n - 1}) {
      sam3::Image f = r->frame(i);
      if (f.width != r->width() || f.height != r->height() ||
          f.rgb.size() != static_cast<size_t>(f.width) * f.height * 3)
        abort();
    }
  } catch (const sam3::Error&) {
  }
  unlink(path.c_str());
  return 0;
}
