// Image decoding, the SAM 3 resize and preprocess against goldens made by the
// official Python pipeline (tests/cpp/data/gen_image_cases.py), plus PNG
// writing and the error paths.
//
// Measured: the uint8 resize matches torchvision exactly (max abs diff 0) on
// every golden, and preprocess() is bit-identical to the official float32
// output, so the bounds below are 0.
#include <gtest/gtest.h>
#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <functional>
#include <iostream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>

#include "golden.h"
#include "sam3/error.h"
#include "sam3/image.h"

namespace {

using nlohmann::json;

const std::string kImages = std::string(SAM3_TEST_DATA_DIR) + "/images/";
constexpr int kMaxResizeDiff = 0;  // uint8 levels, vs torchvision

std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
}

using Golden = golden::Blob;

const Golden& golden() {
  static const Golden g = golden::load_blob(kImages);
  return g;
}

std::vector<std::string> golden_files() {
  std::vector<std::string> files;
  if (golden().index.is_object())
    for (const auto& im : golden().index.at("images")) files.push_back(im.at("file"));
  return files;
}

const json& golden_entry(const std::string& file) {
  for (const auto& im : golden().index.at("images"))
    if (im.at("file") == file) return im;
  throw std::runtime_error("no golden for " + file);
}

int max_abs_diff(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b) {
  int d = 0;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) d = std::max(d, std::abs(a[i] - b[i]));
  return d;
}

std::string name_of(const ::testing::TestParamInfo<std::string>& info) {
  std::string s = info.param;
  std::replace_if(
      s.begin(), s.end(), [](char c) { return !std::isalnum(static_cast<unsigned char>(c)); }, '_');
  return s;
}

TEST(Golden, Loads) {
  ASSERT_TRUE(golden().index.is_object()) << "missing or corrupt " << kImages << "golden.json";
  EXPECT_GE(golden_files().size(), 15u);
  EXPECT_FALSE(golden().bytes.empty());
}

// ------------------------------------------------------------ per image

class ImageCase : public ::testing::TestWithParam<std::string> {};

TEST_P(ImageCase, DecodesLikePillow) {
  const json& g = golden_entry(GetParam());
  const sam3::Image img = sam3::load_image(kImages + GetParam());
  ASSERT_EQ(img.width, g.at("width").get<int>());
  ASSERT_EQ(img.height, g.at("height").get<int>());
  const std::vector<uint8_t> expected = golden().slice(g.at("pixels"));
  ASSERT_EQ(img.rgb.size(), expected.size());
  EXPECT_EQ(max_abs_diff(img.rgb, expected), 0);
  EXPECT_TRUE(img.rgb == expected);
}

TEST_P(ImageCase, ResizeMatchesTorchvision) {
  const json& g = golden_entry(GetParam());
  // Pillow's pixels as input, so this checks the resize alone.
  sam3::Image img;
  img.width = g.at("width");
  img.height = g.at("height");
  img.rgb = golden().slice(g.at("pixels"));
  for (const auto& r : g.at("resized")) {
    const int w = r.at("width"), h = r.at("height");
    SCOPED_TRACE(std::to_string(w) + "x" + std::to_string(h));
    const std::vector<uint8_t> expected = golden().slice(r.at("data"));
    const std::vector<uint8_t> got = sam3::resize_bilinear_aa_u8(img, w, h);
    ASSERT_EQ(got.size(), expected.size());
    EXPECT_LE(max_abs_diff(got, expected), kMaxResizeDiff);
  }
}

TEST_P(ImageCase, PreprocessNormalisesTheResize) {
  const json& g = golden_entry(GetParam());
  const auto& r = g.at("resized").at(0);
  const int size = r.at("width");
  ASSERT_EQ(size, r.at("height").get<int>());
  const std::vector<uint8_t> px = golden().slice(r.at("data"));
  const std::vector<float> x = sam3::preprocess(sam3::load_image(kImages + GetParam()), size);
  const size_t plane = static_cast<size_t>(size) * size;
  ASSERT_EQ(x.size(), 3 * plane);
  double worst = 0;
  for (size_t i = 0; i < plane; ++i)
    for (size_t c = 0; c < 3; ++c) {
      const double want = (px[i * 3 + c] / 255.0 - 0.5) / 0.5;
      worst = std::max(worst, std::abs(x[c * plane + i] - want));
    }
  EXPECT_LE(worst, 1e-6);
}

INSTANTIATE_TEST_SUITE_P(Golden, ImageCase, ::testing::ValuesIn(golden_files()), name_of);
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(ImageCase);

TEST(Preprocess, BitExactWithOfficialFloats) {
  ASSERT_TRUE(golden().index.is_object());
  for (const auto& p : golden().index.at("preprocess")) {
    const std::string file = p.at("file");
    SCOPED_TRACE(file);
    const std::vector<uint8_t> bytes = golden().slice(p.at("data"));
    std::vector<float> expected(bytes.size() / sizeof(float));
    std::memcpy(expected.data(), bytes.data(), bytes.size());  // little-endian, as written
    const std::vector<float> got = sam3::preprocess(sam3::load_image(kImages + file), p.at("size"));
    ASSERT_EQ(got.size(), expected.size());
    EXPECT_EQ(std::memcmp(got.data(), expected.data(), bytes.size()), 0);
  }
}

// ------------------------------------------------------------ assets/sample.png

TEST(SampleImage, DecodesLikePillow) {
  ASSERT_TRUE(golden().index.is_object());
  const json& s = golden().index.at("sample");
  const sam3::Image img =
      sam3::load_image(std::string(SAM3_SOURCE_DIR) + "/" + s.at("file").get<std::string>());
  ASSERT_EQ(img.width, s.at("width").get<int>());
  ASSERT_EQ(img.height, s.at("height").get<int>());
  EXPECT_EQ(crc32(0, img.rgb.data(), static_cast<uInt>(img.rgb.size())),
            s.at("pixels_crc32").get<uint32_t>());
}

// The full-size goldens are stored as checksums (see gen_image_cases.py).
TEST(SampleImage, ResizeMatchesTorchvisionChecksums) {
  ASSERT_TRUE(golden().index.is_object());
  const json& s = golden().index.at("sample");
  const sam3::Image img =
      sam3::load_image(std::string(SAM3_SOURCE_DIR) + "/" + s.at("file").get<std::string>());
  for (const auto& r : golden().index.at("sample_resized")) {
    const int size = r.at("size");
    SCOPED_TRACE("S=" + std::to_string(size));
    const std::vector<uint8_t> got = sam3::resize_bilinear_aa_u8(img, size, size);
    ASSERT_EQ(got.size(), static_cast<size_t>(size) * size * 3);
    int64_t sum[3] = {0, 0, 0}, sum_sq[3] = {0, 0, 0};
    for (size_t i = 0; i < got.size(); ++i) {
      sum[i % 3] += got[i];
      sum_sq[i % 3] += int64_t{got[i]} * got[i];
    }
    int sampled_diff = 0;
    for (const auto& p : r.at("samples")) {
      const size_t at = (p.at(0).get<size_t>() * size + p.at(1).get<size_t>()) * 3;
      for (int c = 0; c < 3; ++c)
        sampled_diff = std::max(sampled_diff, std::abs(got[at + c] - p.at(2 + c).get<int>()));
    }
    EXPECT_LE(sampled_diff, kMaxResizeDiff);
    for (int c = 0; c < 3; ++c) {
      EXPECT_EQ(sum[c], r.at("sum").at(c).get<int64_t>()) << "channel " << c;
      EXPECT_EQ(sum_sq[c], r.at("sum_sq").at(c).get<int64_t>()) << "channel " << c;
    }
    EXPECT_EQ(crc32(0, got.data(), static_cast<uInt>(got.size())), r.at("crc32").get<uint32_t>());
  }
}

// ------------------------------------------------------------ save_png

std::string temp_path(const std::string& name) {
  return ::testing::TempDir() + "sam3_test_image_" + name;
}

TEST(SavePng, RoundTripsGreyRgbRgba) {
  std::mt19937 rng(7);
  const int w = 13, h = 7;
  for (int channels : {1, 3, 4}) {
    SCOPED_TRACE(channels);
    std::vector<uint8_t> px(static_cast<size_t>(w) * h * channels);
    for (auto& v : px) v = static_cast<uint8_t>(rng());
    const std::string path = temp_path("roundtrip" + std::to_string(channels) + ".png");
    sam3::save_png(path, w, h, channels, px.data());
    const sam3::Image img = sam3::load_image(path);
    ASSERT_EQ(img.width, w);
    ASSERT_EQ(img.height, h);
    for (size_t i = 0; i < static_cast<size_t>(w) * h; ++i)
      for (int c = 0; c < 3; ++c)
        ASSERT_EQ(img.rgb[i * 3 + c], px[i * channels + (channels == 1 ? 0 : c)]) << "pixel " << i;
    std::remove(path.c_str());
  }
}

// ------------------------------------------------------------ errors

// Runs f, which must throw sam3::Error whose message contains every piece.
void expect_error(const std::function<void()>& f, const std::vector<std::string>& pieces) {
  try {
    f();
    ADD_FAILURE() << "no sam3::Error thrown";
  } catch (const sam3::Error& e) {
    const std::string msg = e.what();
    for (const auto& p : pieces)
      EXPECT_NE(msg.find(p), std::string::npos) << "'" << p << "' not in: " << msg;
  }
}

std::vector<uint8_t> first_half(const std::string& file) {
  std::vector<uint8_t> b = read_bytes(kImages + file);
  b.resize(b.size() / 2);
  return b;
}

void expect_load_error(const std::string& name, const std::vector<uint8_t>& bytes,
                       const std::vector<std::string>& pieces) {
  const std::string path = temp_path(name);
  write_bytes(path, bytes);
  std::vector<std::string> all = pieces;
  all.push_back(path);
  expect_error([&] { sam3::load_image(path); }, all);
  std::remove(path.c_str());
}

TEST(ImageErrors, MissingFile) {
  expect_error([] { sam3::load_image("/nonexistent/dir/no_such.png"); },
               {"not found", "/nonexistent/dir/no_such.png"});
}

TEST(ImageErrors, Directory) {
  expect_error([] { sam3::load_image(kImages); }, {"not a regular file"});
}

TEST(ImageErrors, EmptyFile) { expect_load_error("empty.png", {}, {"empty file"}); }

TEST(ImageErrors, TextFile) {
  const std::string text = "this is not an image\n";
  expect_load_error("text.png", {text.begin(), text.end()}, {"unsupported format"});
}

TEST(ImageErrors, RandomBytes) {
  std::mt19937 rng(1);
  std::vector<uint8_t> b(4096);
  for (auto& v : b) v = static_cast<uint8_t>(rng());
  b[0] = 0x42;  // not a PNG or JPEG signature by chance
  expect_load_error("random.jpg", b, {"unsupported format"});
}

TEST(ImageErrors, TruncatedPng) {
  expect_load_error("truncated.png", first_half("rgb_37x23.png"), {"corrupt PNG", "truncated"});
}

TEST(ImageErrors, TruncatedInterlacedPng) {
  expect_load_error("truncated_interlaced.png", first_half("interlaced_23x17.png"),
                    {"corrupt PNG"});
}

TEST(ImageErrors, TruncatedJpeg) {
  expect_load_error("truncated.jpg", first_half("photo_37x23.jpg"), {"corrupt JPEG", "truncated"});
}

TEST(ImageErrors, TruncatedProgressiveJpeg) {
  expect_load_error("truncated_progressive.jpg", first_half("progressive_33x21.jpg"),
                    {"corrupt JPEG", "truncated"});
}

TEST(ImageErrors, PngSignatureThenGarbage) {
  std::vector<uint8_t> b = read_bytes(kImages + "rgb_37x23.png");
  std::mt19937 rng(2);
  for (size_t i = 8; i < b.size(); ++i) b[i] = static_cast<uint8_t>(rng());
  expect_load_error("garbage.png", b, {"corrupt PNG"});
}

TEST(ImageErrors, PngDataCorrupted) {
  std::vector<uint8_t> b = read_bytes(kImages + "big_96x72.png");
  for (size_t i = b.size() / 2; i < b.size() / 2 + 64; ++i) b[i] ^= 0x5A;  // inside IDAT
  expect_load_error("corrupted.png", b, {"corrupt PNG"});
}

TEST(ImageErrors, ZeroSizePng) {
  auto be32 = [](std::vector<uint8_t>& b, uint32_t v) {
    for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<uint8_t>(v >> s));
  };
  std::vector<uint8_t> b = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  be32(b, 13);
  const size_t tag = b.size();
  for (char c : std::string("IHDR")) b.push_back(static_cast<uint8_t>(c));
  be32(b, 0);                                        // width
  be32(b, 16);                                       // height
  for (uint8_t v : {8, 2, 0, 0, 0}) b.push_back(v);  // 8-bit RGB
  be32(b, static_cast<uint32_t>(crc32(0, b.data() + tag, 17)));
  expect_load_error("zero.png", b, {"corrupt PNG", "zero"});
}

TEST(ImageErrors, JpegMarkerThenGarbage) {
  std::vector<uint8_t> b(2048);
  std::mt19937 rng(3);
  for (auto& v : b) v = static_cast<uint8_t>(rng());
  b[0] = 0xFF, b[1] = 0xD8, b[2] = 0xFF;
  expect_load_error("garbage.jpg", b, {"corrupt JPEG"});
}

TEST(ImageErrors, UnwritableOutputPath) {
  const uint8_t px[3] = {1, 2, 3};
  expect_error([&] { sam3::save_png("/nonexistent/dir/out.png", 1, 1, 3, px); },
               {"cannot write PNG", "/nonexistent/dir/out.png"});
  expect_error([&] { sam3::save_png(kImages, 1, 1, 3, px); }, {"cannot write PNG"});  // a directory
}

TEST(ImageErrors, BadSavePngArguments) {
  const uint8_t px[8] = {};
  const std::string path = temp_path("bad_args.png");
  expect_error([&] { sam3::save_png(path, 1, 1, 2, px); }, {"channel"});
  expect_error([&] { sam3::save_png(path, 0, 1, 3, px); }, {"zero-size"});
  expect_error([&] { sam3::save_png(path, 1, 1, 3, nullptr); }, {"no pixel data"});
}

TEST(ImageErrors, BadResizeArguments) {
  sam3::Image img;
  expect_error([&] { sam3::resize_bilinear_aa_u8(img, 4, 4); }, {"empty image"});
  img.width = 2, img.height = 2, img.rgb.assign(12, 0);
  expect_error([&] { sam3::resize_bilinear_aa_u8(img, 0, 4); }, {"0x4"});
  expect_error([&] { sam3::preprocess(img, 0); }, {"size"});
  img.rgb.resize(11);
  expect_error([&] { sam3::resize_bilinear_aa_u8(img, 4, 4); }, {"expected 12"});
}

TEST(Resize, SameSizeIsIdentity) {
  const sam3::Image img = sam3::load_image(kImages + "rgb_37x23.png");
  EXPECT_TRUE(sam3::resize_bilinear_aa_u8(img, img.width, img.height) == img.rgb);
}

}  // namespace

// A PNG whose header asks for 20000x10000 pixels (200 M, over sam3::kMaxImagePixels): refused
// from the header, before any pixel buffer is allocated.
TEST(ImageErrors, PixelLimit) {
  auto be32 = [](std::vector<uint8_t>& b, uint32_t v) {
    for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<uint8_t>(v >> s));
  };
  std::vector<uint8_t> b = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  auto chunk = [&](const char* type, const std::vector<uint8_t>& data) {
    be32(b, static_cast<uint32_t>(data.size()));
    std::vector<uint8_t> body(type, type + 4);
    body.insert(body.end(), data.begin(), data.end());
    b.insert(b.end(), body.begin(), body.end());
    be32(b, static_cast<uint32_t>(crc32(0, body.data(), static_cast<uInt>(body.size()))));
  };
  std::vector<uint8_t> ihdr;
  be32(ihdr, 20000);
  be32(ihdr, 10000);
  ihdr.insert(ihdr.end(), {8, 2, 0, 0, 0});  // 8-bit RGB
  chunk("IHDR", ihdr);
  std::vector<uint8_t> raw(64, 0), z(128);
  uLongf zn = z.size();
  ASSERT_EQ(compress(z.data(), &zn, raw.data(), raw.size()), Z_OK);
  z.resize(zn);
  chunk("IDAT", z);  // libpng reads the header up to the first IDAT
  chunk("IEND", {});
  expect_load_error("huge.png", b, {"image too large (20000x10000 pixels; the limit is 178956970)"});
}
