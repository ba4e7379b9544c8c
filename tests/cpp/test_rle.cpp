// COCO RLE against pycocotools (goldens from data/gen_postprocess_cases.py): the counts
// string must match byte for byte; decode, area and box must match exactly.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "sam3/error.h"
#include "sam3/rle.h"

namespace {

using nlohmann::json;

json load_cases() {
  std::ifstream f(std::string(SAM3_TEST_DATA_DIR) + "/rle_cases.json");
  if (!f) throw std::runtime_error("missing rle_cases.json; run gen_postprocess_cases.py");
  return json::parse(f)["rle"];
}

// Row-major mask from a '0'/'1' string or from XOR-ed disks and rectangles (as the generator).
std::vector<uint8_t> mask_of(const json& c) {
  const int h = c["h"], w = c["w"];
  std::vector<uint8_t> m(static_cast<size_t>(h) * w, 0);
  if (c.contains("mask")) {
    const std::string s = c["mask"];
    for (size_t i = 0; i < m.size(); ++i) m[i] = s.at(i) == '1';
    return m;
  }
  const json disks = c["shapes"].value("disks", json::array());
  const json rects = c["shapes"].value("rects", json::array());
  for (int y = 0; y < h; ++y) {
    for (int x = 0; x < w; ++x) {
      bool v = false;
      for (const auto& d : disks) {
        const int cy = d[0], cx = d[1], r = d[2];
        v ^= (y - cy) * (y - cy) + (x - cx) * (x - cx) <= r * r;
      }
      for (const auto& r : rects)
        v ^= y >= r[0].get<int>() && y < r[2].get<int>() && x >= r[1].get<int>() && x < r[3].get<int>();
      m[static_cast<size_t>(y) * w + x] = v;
    }
  }
  return m;
}

}  // namespace

TEST(Rle, MatchesPycocotools) {
  const json cases = load_cases();
  ASSERT_GE(cases.size(), 15u);
  for (const auto& c : cases) {
    SCOPED_TRACE(c["name"].get<std::string>());
    const int h = c["h"], w = c["w"];
    const std::vector<uint8_t> mask = mask_of(c);
    const std::string counts = c["counts"];
    EXPECT_EQ(sam3::rle_encode(mask.data(), h, w), counts);
    EXPECT_EQ(sam3::rle_decode(counts, h, w), mask);
    EXPECT_EQ(sam3::rle_area(counts), c["area"].get<uint64_t>());
    const auto box = sam3::mask_bbox_xyxy(mask.data(), h, w);
    for (int i = 0; i < 4; ++i) EXPECT_EQ(box[i], c["bbox_xyxy"][i].get<float>()) << i;
  }
}

TEST(Rle, TreatsAnyNonzeroAsForeground) {
  const std::vector<uint8_t> a = {0, 1, 1, 0, 1, 0}, b = {0, 7, 255, 0, 1, 0};
  EXPECT_EQ(sam3::rle_encode(b.data(), 2, 3), sam3::rle_encode(a.data(), 2, 3));
}

TEST(Rle, RoundTripsRandomMasks) {
  std::mt19937 rng(7);
  for (int trial = 0; trial < 200; ++trial) {
    const int h = 1 + static_cast<int>(rng() % 40), w = 1 + static_cast<int>(rng() % 40);
    const double p = (rng() % 101) / 100.0;
    std::bernoulli_distribution on(p);
    std::vector<uint8_t> m(static_cast<size_t>(h) * w);
    for (auto& v : m) v = on(rng);
    const std::string s = sam3::rle_encode(m.data(), h, w);
    ASSERT_EQ(sam3::rle_decode(s, h, w), m) << h << "x" << w << " p=" << p;
    uint64_t area = 0;
    for (uint8_t v : m) area += v;
    ASSERT_EQ(sam3::rle_area(s), area);
  }
}

TEST(Rle, RejectsInvalidArguments) {
  const std::vector<uint8_t> m(6, 1);
  EXPECT_THROW(sam3::rle_encode(m.data(), 0, 6), sam3::Error);
  EXPECT_THROW(sam3::rle_encode(m.data(), 6, -1), sam3::Error);
  EXPECT_THROW(sam3::rle_encode(nullptr, 2, 3), sam3::Error);
  EXPECT_THROW(sam3::mask_bbox_xyxy(m.data(), 0, 1), sam3::Error);
  EXPECT_THROW(sam3::mask_bbox_xyxy(nullptr, 2, 3), sam3::Error);
  EXPECT_THROW(sam3::rle_decode("06", 0, 6), sam3::Error);
}

TEST(Rle, RejectsMalformedCounts) {
  const std::string full = sam3::rle_encode(std::vector<uint8_t>(6, 1).data(), 2, 3);  // "06"
  EXPECT_NO_THROW(sam3::rle_decode(full, 2, 3));
  EXPECT_NO_THROW(sam3::rle_decode(full, 3, 2));
  EXPECT_THROW(sam3::rle_decode(full, 2, 4), sam3::Error);   // covers 6 of 8 pixels
  EXPECT_THROW(sam3::rle_decode(full, 1, 5), sam3::Error);   // covers more than 5
  EXPECT_THROW(sam3::rle_decode("0 6", 2, 3), sam3::Error);  // not a counts character
  EXPECT_THROW(sam3::rle_decode("0\x7f", 2, 3), sam3::Error);
  EXPECT_THROW(sam3::rle_decode("0P", 2, 3), sam3::Error);   // continuation bit, then nothing
  EXPECT_THROW(sam3::rle_decode("@", 1, 1), sam3::Error);    // -16: negative run
  EXPECT_THROW(sam3::rle_decode("", 1, 1), sam3::Error);
  EXPECT_THROW(sam3::rle_area("PPPPPPPPPPPPPPP0"), sam3::Error);  // more digits than fit
}
