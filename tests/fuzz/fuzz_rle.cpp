// COCO RLE: decoding arbitrary counts never crashes (a mask or a sam3::Error), a decoded
// mask has the asked size, its area is rle_area's, and encode/decode round-trips any mask.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "sam3/error.h"
#include "sam3/rle.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const int h = data[0] % 48 + 1, w = data[1] % 48 + 1;
  data += 2;
  size -= 2;
  // 1. the rest as counts text
  const std::string counts(reinterpret_cast<const char*>(data), size);
  try {
    const auto mask = sam3::rle_decode(counts, h, w);
    if (mask.size() != static_cast<size_t>(h) * w) abort();
    uint64_t area = 0;
    for (uint8_t v : mask) {
      if (v > 1) abort();
      area += v;
    }
    if (sam3::rle_area(counts) != area) abort();
    if (sam3::rle_decode(sam3::rle_encode(mask.data(), h, w), h, w) != mask) abort();
  } catch (const sam3::Error&) {
  }
  try {
    (void)sam3::rle_area(counts);
  } catch (const sam3::Error&) {
  }
  // 2. the rest as a mask (one bit per pixel, repeated to fill h*w)
  if (size == 0) return 0;
  std::vector<uint8_t> mask(static_cast<size_t>(h) * w);
  for (size_t i = 0; i < mask.size(); ++i) mask[i] = (data[(i / 8) % size] >> (i % 8)) & 1;
  const std::string enc = sam3::rle_encode(mask.data(), h, w);
  if (sam3::rle_decode(enc, h, w) != mask) abort();
  const auto box = sam3::mask_bbox_xyxy(mask.data(), h, w);
  if (box[2] > w || box[3] > h || box[0] > box[2] || box[1] > box[3]) abort();
  return 0;
}
