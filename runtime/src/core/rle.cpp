#include "sam3/rle.h"

#include <cstddef>
#include <string>

#include "sam3/error.h"

namespace sam3 {
namespace {

void require_shape(int h, int w, const char* fn) {
  if (h <= 0 || w <= 0)
    throw Error(std::string(fn) + ": mask size must be positive, got " + std::to_string(h) + "x" +
                std::to_string(w));
}

// pycocotools' rleFrString: 5-bit little-endian groups, 0x20 = more follow, 0x10 in the
// last group = negative, each char offset by '0'. From the fourth count on, the value
// is the difference to the count two places back.
std::vector<int64_t> parse_counts(const std::string& s) {
  std::vector<int64_t> counts;
  std::size_t p = 0;
  while (p < s.size()) {
    int64_t x = 0;
    int k = 0;
    bool more = true;
    while (more) {
      if (p >= s.size()) throw Error("rle: counts string ends inside a number");
      if (k >= 12) throw Error("rle: number too long in counts string");
      const int c = static_cast<unsigned char>(s[p]) - 48;
      if (c < 0 || c > 63) throw Error("rle: invalid character in counts string");
      x |= static_cast<int64_t>(c & 0x1f) << (5 * k);
      more = (c & 0x20) != 0;
      ++p;
      ++k;
      if (!more && (c & 0x10)) x |= static_cast<int64_t>(~uint64_t{0} << (5 * k));
    }
    if (counts.size() > 2) x += counts[counts.size() - 2];
    if (x < 0) throw Error("rle: negative run length in counts string");
    counts.push_back(x);
  }
  return counts;
}

}  // namespace

std::string rle_encode(const uint8_t* mask, int h, int w) {
  require_shape(h, w, "rle_encode");
  if (mask == nullptr) throw Error("rle_encode: null mask");
  std::vector<int64_t> counts;
  uint8_t current = 0;
  int64_t run = 0;
  for (int x = 0; x < w; ++x) {
    for (int y = 0; y < h; ++y) {
      const uint8_t v = mask[static_cast<std::size_t>(y) * w + x] ? 1 : 0;
      if (v != current) {
        counts.push_back(run);
        run = 0;
        current = v;
      }
      ++run;
    }
  }
  counts.push_back(run);

  std::string s;
  for (std::size_t i = 0; i < counts.size(); ++i) {
    int64_t x = counts[i];
    if (i > 2) x -= counts[i - 2];
    bool more = true;
    while (more) {
      int c = static_cast<int>(x & 0x1f);
      x >>= 5;  // arithmetic: negative deltas end in a run of -1
      more = (c & 0x10) ? x != -1 : x != 0;
      if (more) c |= 0x20;
      s.push_back(static_cast<char>(c + 48));
    }
  }
  return s;
}

std::vector<uint8_t> rle_decode(const std::string& counts, int h, int w) {
  require_shape(h, w, "rle_decode");
  const std::vector<int64_t> runs = parse_counts(counts);
  const int64_t n = static_cast<int64_t>(h) * w;
  int64_t total = 0;
  for (int64_t r : runs) {
    total += r;
    if (total > n) break;
  }
  if (total != n)
    throw Error("rle_decode: runs cover " + std::to_string(total) + " pixels, expected " +
                std::to_string(n) + " for " + std::to_string(h) + "x" + std::to_string(w));
  std::vector<uint8_t> mask(static_cast<std::size_t>(n), 0);
  int64_t pos = 0;
  for (std::size_t i = 0; i < runs.size(); ++i) {
    if (i % 2 == 1) {
      for (int64_t p = pos; p < pos + runs[i]; ++p)
        mask[static_cast<std::size_t>((p % h) * w + p / h)] = 1;
    }
    pos += runs[i];
  }
  return mask;
}

uint64_t rle_area(const std::string& counts) {
  const std::vector<int64_t> runs = parse_counts(counts);
  uint64_t area = 0;
  for (std::size_t i = 1; i < runs.size(); i += 2) area += static_cast<uint64_t>(runs[i]);
  return area;
}

std::array<float, 4> mask_bbox_xyxy(const uint8_t* mask, int h, int w) {
  require_shape(h, w, "mask_bbox_xyxy");
  if (mask == nullptr) throw Error("mask_bbox_xyxy: null mask");
  int x0 = w, y0 = h, x1 = -1, y1 = -1;
  for (int y = 0; y < h; ++y) {
    for (int x = 0; x < w; ++x) {
      if (!mask[static_cast<std::size_t>(y) * w + x]) continue;
      if (x < x0) x0 = x;
      if (x > x1) x1 = x;
      if (y < y0) y0 = y;
      y1 = y;
    }
  }
  if (x1 < 0) return {0.0f, 0.0f, 0.0f, 0.0f};
  return {static_cast<float>(x0), static_cast<float>(y0), static_cast<float>(x1 + 1),
          static_cast<float>(y1 + 1)};
}

}  // namespace sam3
