// The video frame preprocessing (Pillow's BILINEAR resize, float16 normalisation)
// against goldens made by the official loader, sam3.model.io_utils
// (tests/cpp/data/gen_video_preprocess_cases.py). Every comparison is exact:
// uint8 bytes for the resize, float32 bit patterns for the frames.
#include <gtest/gtest.h>
#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "golden.h"
#include "sam3/error.h"
#include "sam3/image.h"

namespace {

using nlohmann::json;

const std::string kData = std::string(SAM3_TEST_DATA_DIR);
const std::string kGolden = kData + "/video_preprocess/";

using Golden = golden::Blob;

const Golden& golden() {
  static const Golden g = golden::load_blob(kGolden);
  return g;
}

// IEEE half bits -> float, written independently of the library's rounding.
float half_to_float(uint16_t h) {
  const int exp = (h >> 10) & 0x1f, man = h & 0x3ff;
  const float mag = exp == 0 ? std::ldexp(static_cast<float>(man), -24)
                             : std::ldexp(static_cast<float>(man | 0x400), exp - 25);
  return (h & 0x8000) ? -mag : mag;
}

// The golden frame ("<f2" NCHW) as float32.
std::vector<float> golden_frame(const json& range) {
  const std::vector<uint8_t> raw = golden().slice(range);
  std::vector<float> out(raw.size() / 2);
  for (size_t i = 0; i < out.size(); ++i)
    out[i] = half_to_float(static_cast<uint16_t>(raw[2 * i] | (raw[2 * i + 1] << 8)));
  return out;
}

uint32_t bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

// Number of floats whose bit patterns differ (so -0.0 != 0.0), and the first one.
size_t count_bit_diffs(const std::vector<float>& got, const std::vector<float>& want,
                       std::string* first) {
  size_t n = 0;
  for (size_t i = 0; i < std::min(got.size(), want.size()); ++i)
    if (bits(got[i]) != bits(want[i]) && n++ == 0)
      *first = "index " + std::to_string(i) + ": " + std::to_string(got[i]) + " vs " +
               std::to_string(want[i]);
  return n;
}

size_t count_byte_diffs(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b) {
  size_t n = 0;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) n += a[i] != b[i];
  return n;
}

std::vector<int> frame_case_ids() {
  std::vector<int> ids;
  if (golden().index.is_object())
    for (size_t i = 0; i < golden().index.at("frames").size(); ++i) ids.push_back(int(i));
  return ids;
}

std::string case_name(const ::testing::TestParamInfo<int>& info) {
  const json& c = golden().index.at("frames").at(info.param);
  std::string s = c.at("file").get<std::string>() + "_S" + std::to_string(c.at("size").get<int>());
  std::replace_if(
      s.begin(), s.end(), [](char ch) { return !std::isalnum(static_cast<unsigned char>(ch)); },
      '_');
  return s;
}

TEST(VideoPreprocessGolden, Loads) {
  ASSERT_TRUE(golden().index.is_object()) << "missing or corrupt " << kGolden << "golden.json";
  EXPECT_GE(golden().index.at("frames").size(), 8u);
  EXPECT_FALSE(golden().bytes.empty());
}

// ------------------------------------------------------------ per (image, S)

class VideoFrameCase : public ::testing::TestWithParam<int> {
 protected:
  const json& entry() const { return golden().index.at("frames").at(GetParam()); }
  sam3::Image image() const { return sam3::load_image(kData + "/images/" + entry().at("file").get<std::string>()); }
  int size() const { return entry().at("size"); }
};

TEST_P(VideoFrameCase, ResizeMatchesPillow) {
  const std::vector<uint8_t> want = golden().slice(entry().at("resized"));
  const std::vector<uint8_t> got = sam3::resize_bilinear_pil(image(), size(), size());
  ASSERT_EQ(got.size(), want.size());
  EXPECT_EQ(count_byte_diffs(got, want), 0u);
}

TEST_P(VideoFrameCase, FrameMatchesOfficialLoader) {
  const std::vector<float> want = golden_frame(entry().at("frame"));
  const std::vector<float> got = sam3::preprocess_video_frame(image(), size());
  ASSERT_EQ(got.size(), static_cast<size_t>(3) * size() * size());
  ASSERT_EQ(got.size(), want.size());
  std::string first;
  EXPECT_EQ(count_bit_diffs(got, want, &first), 0u) << "first difference at " << first;
}

INSTANTIATE_TEST_SUITE_P(Golden, VideoFrameCase, ::testing::ValuesIn(frame_case_ids()), case_name);
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(VideoFrameCase);

// ------------------------------------------------------------ the rest

TEST(ResizePil, NonSquareMatchesPillow) {
  ASSERT_TRUE(golden().index.is_object());
  for (const auto& c : golden().index.at("resize_only")) {
    const int w = c.at("width"), h = c.at("height");
    SCOPED_TRACE(c.at("file").get<std::string>() + " -> " + std::to_string(w) + "x" +
                 std::to_string(h));
    const sam3::Image img = sam3::load_image(kData + "/images/" + c.at("file").get<std::string>());
    const std::vector<uint8_t> want = golden().slice(c.at("data"));
    const std::vector<uint8_t> got = sam3::resize_bilinear_pil(img, w, h);
    ASSERT_EQ(got.size(), want.size());
    EXPECT_EQ(count_byte_diffs(got, want), 0u);
  }
}

// All 256 input levels through to_tensor + float16 (x - 0.5) / 0.5.
TEST(VideoPreprocess, EveryLevelMatchesOfficialFloat16) {
  ASSERT_TRUE(golden().index.is_object());
  const json& g = golden().index.at("levels");
  const int size = g.at("size");
  ASSERT_EQ(size, 16);
  sam3::Image img;  // the generator's levels_png(): R = v, G = 255 - v, B = 7v mod 256
  img.width = img.height = 16;
  for (int v = 0; v < 256; ++v) {
    img.rgb.push_back(static_cast<uint8_t>(v));
    img.rgb.push_back(static_cast<uint8_t>(255 - v));
    img.rgb.push_back(static_cast<uint8_t>(v * 7 % 256));
  }
  const std::vector<float> want = golden_frame(g.at("frame"));
  const std::vector<float> got = sam3::preprocess_video_frame(img, size);
  ASSERT_EQ(got.size(), want.size());
  std::string first;
  EXPECT_EQ(count_bit_diffs(got, want, &first), 0u) << "first difference at " << first;
  // The R plane is the table itself: monotonic, -1 at 0 and exactly 1 at 255.
  EXPECT_EQ(got[0], -1.0f);
  EXPECT_EQ(got[255], 1.0f);
  for (int v = 1; v < 256; ++v) EXPECT_LT(got[v - 1], got[v]);
}

// assets/sample.png at the model's 1008 and at 336: CRC-32s and sampled values.
TEST(VideoPreprocess, SampleImageChecksums) {
  ASSERT_TRUE(golden().index.is_object());
  const sam3::Image img = sam3::load_image(std::string(SAM3_SOURCE_DIR) + "/assets/sample.png");
  for (const auto& c : golden().index.at("checksums")) {
    const int s = c.at("size");
    SCOPED_TRACE("S=" + std::to_string(s));
    const std::vector<uint8_t> px = sam3::resize_bilinear_pil(img, s, s);
    EXPECT_EQ(crc32(0, px.data(), static_cast<uInt>(px.size())),
              c.at("resized_crc32").get<uint32_t>());
    const std::vector<float> x = sam3::preprocess_video_frame(img, s);
    ASSERT_EQ(x.size(), static_cast<size_t>(3) * s * s);
    // The golden CRC is over little-endian float32 bytes: this is an x86/ARM host.
    EXPECT_EQ(crc32(0, reinterpret_cast<const Bytef*>(x.data()),
                    static_cast<uInt>(x.size() * sizeof(float))),
              c.at("frame_crc32").get<uint32_t>());
    const size_t plane = static_cast<size_t>(s) * s;
    for (const auto& p : c.at("samples")) {
      const size_t y = p.at(0), xx = p.at(1), i = y * s + xx;
      for (int ch = 0; ch < 3; ++ch) {
        EXPECT_EQ(px[i * 3 + ch], p.at(2 + ch).get<int>()) << "at " << y << "," << xx;
        EXPECT_EQ(x[ch * plane + i], p.at(5 + ch).get<float>()) << "at " << y << "," << xx;
      }
    }
  }
}

TEST(ResizePil, SameSizeIsIdentity) {
  const sam3::Image img = sam3::load_image(kData + "/images/rgb_37x23.png");
  EXPECT_EQ(sam3::resize_bilinear_pil(img, img.width, img.height), img.rgb);
}

TEST(ResizePil, BadArguments) {
  sam3::Image empty;
  EXPECT_THROW(sam3::resize_bilinear_pil(empty, 4, 4), sam3::Error);
  sam3::Image img;
  img.width = 2;
  img.height = 2;
  img.rgb.assign(5, 0);  // too short
  EXPECT_THROW(sam3::resize_bilinear_pil(img, 4, 4), sam3::Error);
  img.rgb.assign(12, 0);
  EXPECT_THROW(sam3::resize_bilinear_pil(img, 0, 4), sam3::Error);
  EXPECT_THROW(sam3::preprocess_video_frame(img, 0), sam3::Error);
  EXPECT_THROW(sam3::preprocess_video_frame(img, -3), sam3::Error);
}

}  // namespace
