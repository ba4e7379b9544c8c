// sam3::VideoReader on the fixtures of tests/cpp/data/gen_video_cases.py and on
// small folders written here: the official frame order, frame counts, lossless
// video == PNG frames, random access == sequential == the ffmpeg CLI's decode
// (reference CRCs recorded at generation), and an Error for every bad input.
#include <gtest/gtest.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <set>

#include "sam3/error.h"
#include "sam3/image.h"
#include "sam3/limits.h"
#include "sam3/video_reader.h"

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

const std::string kVideo = std::string(SAM3_TEST_DATA_DIR) + "/video/";
// frames/ in the official (numeric) order
const std::vector<std::string> kFrameNames = {"1.png", "2.png", "3.png", "5.png", "8.PNG", "13.png"};

// A fresh folder under the system temp dir, removed afterwards.
class TempDir {
 public:
  TempDir() {
    static int n = 0;
    path_ = fs::temp_directory_path() /
            ("sam3_video_test_" + std::to_string(::getpid()) + "_" + std::to_string(n++));
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string operator/(const std::string& name) const { return (path_ / name).string(); }
  std::string str() const { return path_.string(); }

 private:
  fs::path path_;
};

// A w x h PNG filled with `value` in R (G, B fixed), so a frame's identity is rgb[0].
void write_frame(const std::string& path, int value, int w = 2, int h = 2) {
  std::vector<uint8_t> px(static_cast<size_t>(w) * h * 3);
  for (size_t i = 0; i < px.size(); i += 3) {
    px[i] = static_cast<uint8_t>(value);
    px[i + 1] = 7;
    px[i + 2] = 9;
  }
  sam3::save_png(path, w, h, 3, px.data());
}

void write_text(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

std::vector<char> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_bytes(const std::string& path, const std::vector<char>& bytes, size_t n) {
  std::ofstream(path, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(n));
}

uint32_t crc(const sam3::Image& img) {
  return crc32(0, img.rgb.data(), static_cast<uInt>(img.rgb.size()));
}

// Runs f, expects a sam3::Error whose message holds every one of `parts`.
template <typename F>
void expect_error(F f, const std::vector<std::string>& parts) {
  try {
    f();
    ADD_FAILURE() << "no sam3::Error thrown";
  } catch (const sam3::Error& e) {
    for (const auto& p : parts) EXPECT_NE(std::string(e.what()).find(p), std::string::npos)
        << "message \"" << e.what() << "\" lacks \"" << p << "\"";
  }
}

// Each frame's identity (its first R value), in reader order.
std::vector<int> frame_ids(sam3::VideoReader& r) {
  std::vector<int> ids;
  for (int i = 0; i < r.num_frames(); ++i) ids.push_back(r.frame(i).rgb.at(0));
  return ids;
}

// ------------------------------------------------------------ folders

TEST(FolderReader, NumericOrderOfTheFixture) {
  auto r = sam3::VideoReader::open(kVideo + "frames");
  ASSERT_EQ(r->num_frames(), 6);
  EXPECT_EQ(r->width(), 40);
  EXPECT_EQ(r->height(), 30);
  EXPECT_EQ(r->describe(), "folder of 6 PNG/JPEG frames");
  for (int i = 0; i < 6; ++i) {
    SCOPED_TRACE(kFrameNames[i]);
    EXPECT_EQ(r->frame(i).rgb, sam3::load_image(kVideo + "frames/" + kFrameNames[i]).rgb);
  }
}

TEST(FolderReader, PythonIntStemsSortNumerically) {
  // What int(os.path.splitext(name)[0]) accepts: leading zeros, a sign,
  // surrounding spaces, underscores between digits, any length. Equal values
  // ("-0", "00") are ordered by name.
  const std::vector<std::string> order = {"-1.png",  "-0.png",  "00.png",  "+3.png",
                                          " 5.png",  "007.png", "1_0.png", "12 .png",
                                          "99999999999999999999999.png",
                                          "100000000000000000000000.png"};
  TempDir dir;
  for (size_t i = order.size(); i-- > 0;) write_frame(dir / order[i], static_cast<int>(i));
  write_text(dir / "notes.txt", "not a frame");
  auto r = sam3::VideoReader::open(dir.str());
  std::vector<int> want(order.size());
  for (size_t i = 0; i < want.size(); ++i) want[i] = static_cast<int>(i);
  EXPECT_EQ(frame_ids(*r), want);
}

TEST(FolderReader, LexicographicWhenAnyStemIsNotAnInt) {
  // "1_" "1.0" "a" are not Python ints: everything sorts by name, byte order.
  const std::vector<std::string> order = {"1.0.png", "10.png", "1_.png", "9.png",
                                          "B.png",   "_1.png", "a.png"};
  TempDir dir;
  for (size_t i = 0; i < order.size(); ++i) write_frame(dir / order[i], static_cast<int>(i));
  auto r = sam3::VideoReader::open(dir.str());
  EXPECT_EQ(frame_ids(*r), (std::vector<int>{0, 1, 2, 3, 4, 5, 6}));
}

TEST(FolderReader, ExtensionsAsTheOfficialLoaderSeesThem) {
  TempDir dir;
  write_frame(dir / "0.png", 0);
  write_frame(dir / "1.JPEG", 1);  // lowercased extension; decoded by content (PNG)
  write_frame(dir / "2.Jpg", 2);
  write_frame(dir / ".png", 50);    // splitext: no extension -> not a frame
  write_frame(dir / "..png", 51);   // likewise
  write_frame(dir / "3.png.txt", 52);
  fs::create_directories(dir / "4.png");  // a folder, not a frame
  auto r = sam3::VideoReader::open(dir.str());
  EXPECT_EQ(frame_ids(*r), (std::vector<int>{0, 1, 2}));
}

TEST(FolderReader, FramesAreReadOnDemand) {
  TempDir dir;
  write_frame(dir / "0.png", 10);
  write_frame(dir / "1.png", 11);
  auto r = sam3::VideoReader::open(dir.str());
  write_frame(dir / "1.png", 99);  // replaced after open: frame(1) sees the new file
  EXPECT_EQ(r->frame(1).rgb[0], 99);
}

TEST(FolderReader, OtherSizeFailsOnThatFrame) {
  TempDir dir;
  write_frame(dir / "0.png", 0, 4, 4);
  write_frame(dir / "1.png", 1, 5, 4);
  auto r = sam3::VideoReader::open(dir.str());
  EXPECT_EQ(r->width(), 4);
  EXPECT_EQ(r->frame(0).rgb[0], 0);
  expect_error([&] { r->frame(1); }, {"1.png", "5x4", "4x4"});
  EXPECT_EQ(r->frame(0).rgb[0], 0);  // still usable
}

TEST(FolderReader, Errors) {
  TempDir empty;
  expect_error([&] { sam3::VideoReader::open(empty.str()); }, {"no PNG/JPEG frames in", empty.str()});
  TempDir text_only;
  write_text(text_only / "0.txt", "x");
  expect_error([&] { sam3::VideoReader::open(text_only.str()); }, {"no PNG/JPEG frames in"});
  expect_error([&] { sam3::VideoReader::open(kVideo + "with_bmp"); }, {"1.bmp", "PNG and JPEG"});
  TempDir tiff;
  write_frame(tiff / "0.png", 0);
  write_frame(tiff / "1.TIFF", 1);
  write_frame(tiff / "2.webp", 2);
  expect_error([&] { sam3::VideoReader::open(tiff.str()); }, {"1.TIFF"});

  TempDir corrupt_first;
  write_text(corrupt_first / "0.png", "not a png");
  write_frame(corrupt_first / "1.png", 1);
  expect_error([&] { sam3::VideoReader::open(corrupt_first.str()); }, {"0.png"});
  TempDir corrupt_later;
  write_frame(corrupt_later / "0.png", 0);
  write_text(corrupt_later / "1.png", "not a png");
  auto r = sam3::VideoReader::open(corrupt_later.str());
  expect_error([&] { r->frame(1); }, {"1.png"});
  expect_error([&] { r->frame(-1); }, {"frame index -1 out of range", "2 frames"});
  expect_error([&] { r->frame(2); }, {"frame index 2 out of range"});
}

TEST(FolderReader, FrameCountLimit) {
  // one file more than the limit (empty files: the listing refuses the folder before any
  // frame is decoded)
  TempDir many;
  for (int i = 0; i <= sam3::kMaxVideoFrames; ++i) std::ofstream((many / (std::to_string(i) + ".png")).c_str());
  expect_error([&] { sam3::VideoReader::open(many.str()); },
               {"holds more than " + std::to_string(sam3::kMaxVideoFrames) + " frames (the limit)"});
}

// ------------------------------------------------------------ open()

TEST(VideoReaderOpen, FramePixelLimit) {
  expect_error([] { sam3::VideoReader::open(kVideo + "huge_frame.mkv"); },
               {"huge_frame.mkv", "14000x13000", "more pixels than the limit"});
}


TEST(VideoReaderOpen, Errors) {
  expect_error([] { sam3::VideoReader::open("/nonexistent/clip.mp4"); },
               {"no such file or folder", "/nonexistent/clip.mp4"});
  const std::string png = std::string(SAM3_TEST_DATA_DIR) + "/images/rgb_37x23.png";
  expect_error([&] { sam3::VideoReader::open(png); }, {"not a folder of frames or a video", png});
  expect_error([] { sam3::VideoReader::open(kVideo + "not_a_video.mp4"); },
               {"not_a_video.mp4", "cannot open", "Invalid data"});
  expect_error([] { sam3::VideoReader::open(kVideo + "audio_only.mkv"); },
               {"audio_only.mkv", "no video stream"});
  TempDir dir;
  write_text(dir / "empty.webm", "");
  expect_error([&] { sam3::VideoReader::open(dir / "empty.webm"); }, {"empty.webm"});
  // The first bytes of a real file: header cut short.
  const std::vector<char> mp4 = read_bytes(kVideo + "bframes.mp4");
  for (size_t n : {size_t{8}, size_t{100}, size_t{600}}) {
    write_bytes(dir / "head.mp4", mp4, n);
    expect_error([&] { sam3::VideoReader::open(dir / "head.mp4"); }, {"head.mp4"});
  }
}

TEST(VideoReaderOpen, ExtensionInAnyCase) {
  TempDir dir;
  fs::copy_file(kVideo + "frames_ffv1.mkv", dir / "CLIP.MKV");
  auto r = sam3::VideoReader::open(dir / "CLIP.MKV");
  EXPECT_EQ(r->num_frames(), 6);
}

// ------------------------------------------------------------ lossless video

TEST(LosslessVideo, EqualsThePngFramesInAnyOrder) {
  auto video = sam3::VideoReader::open(kVideo + "frames_ffv1.mkv");
  auto folder = sam3::VideoReader::open(kVideo + "frames");
  ASSERT_EQ(video->num_frames(), 6);
  EXPECT_EQ(video->width(), 40);
  EXPECT_EQ(video->height(), 30);
  EXPECT_EQ(video->describe(), "FFV1 video, 6 frames, 10 fps");
  std::vector<sam3::Image> png;
  for (int i = 0; i < 6; ++i) png.push_back(folder->frame(i));

  std::vector<int> order = {0, 1, 2, 3, 4, 5, 5, 4, 3, 2, 1, 0, 3, 0, 5, 2, 2, 4, 1};
  std::mt19937 rng(7);
  for (int k = 0; k < 20; ++k) order.push_back(static_cast<int>(rng() % 6));
  for (int i : order) {
    SCOPED_TRACE("frame " + std::to_string(i));
    const sam3::Image got = video->frame(i);
    ASSERT_EQ(got.width, 40);
    ASSERT_EQ(got.height, 30);
    EXPECT_TRUE(got.rgb == png[i].rgb);
  }
}

// ------------------------------------------------------------ H.264 with B-frames

json reference() {
  std::ifstream in(kVideo + "bframes_reference.json");
  return json::parse(in);
}

TEST(BFrameVideo, CountSizeDescription) {
  auto r = sam3::VideoReader::open(kVideo + "bframes.mp4");
  const json ref = reference();
  EXPECT_EQ(r->num_frames(), ref.at("frames").get<int>());
  EXPECT_EQ(r->num_frames(), 20);
  EXPECT_EQ(r->width(), 64);
  EXPECT_EQ(r->height(), 48);
  EXPECT_EQ(r->describe(), "H.264 video, 20 frames, 25 fps");
}

TEST(BFrameVideo, SequentialMatchesTheFfmpegCli) {
  auto r = sam3::VideoReader::open(kVideo + "bframes.mp4");
  const json ref = reference();
  ASSERT_EQ(r->num_frames(), static_cast<int>(ref.at("crc32").size()));
  for (int i = 0; i < r->num_frames(); ++i)
    EXPECT_EQ(crc(r->frame(i)), ref.at("crc32").at(i).get<uint32_t>()) << "frame " << i;
}

TEST(BFrameVideo, RandomAccessMatchesSequential) {
  std::vector<uint32_t> seq;
  {
    auto r = sam3::VideoReader::open(kVideo + "bframes.mp4");
    for (int i = 0; i < r->num_frames(); ++i) seq.push_back(crc(r->frame(i)));
  }
  ASSERT_EQ(seq.size(), 20u);
  EXPECT_EQ(std::set<uint32_t>(seq.begin(), seq.end()).size(), 20u) << "fixture frames not distinct";
  auto r = sam3::VideoReader::open(kVideo + "bframes.mp4");
  // Backwards, repeats, skips within a keyframe group (0-4, 5-9, ...) and across.
  std::vector<int> order = {19, 18, 17, 10, 10, 11, 13, 2, 1, 0, 0, 7, 6, 9, 12, 19, 3, 4, 5, 15};
  for (int i = 19; i >= 0; --i) order.push_back(i);
  std::mt19937 rng(11);
  for (int k = 0; k < 40; ++k) order.push_back(static_cast<int>(rng() % 20));
  for (int i : order) EXPECT_EQ(crc(r->frame(i)), seq[i]) << "frame " << i;
}

TEST(BFrameVideo, OutOfRangeThenStillUsable) {
  auto r = sam3::VideoReader::open(kVideo + "bframes.mp4");
  const json ref = reference();
  expect_error([&] { r->frame(-1); }, {"frame index -1 out of range", "bframes.mp4", "20 frames"});
  expect_error([&] { r->frame(20); }, {"frame index 20 out of range"});
  expect_error([&] { r->frame(1 << 30); }, {"out of range"});
  EXPECT_EQ(crc(r->frame(19)), ref.at("crc32").at(19).get<uint32_t>());
  expect_error([&] { r->frame(20); }, {"out of range"});
  EXPECT_EQ(crc(r->frame(0)), ref.at("crc32").at(0).get<uint32_t>());
}

// The same H.264 stream in AVI: packets without pts, frames numbered in the
// decoder's output order; going backwards restarts from the top of the file.
TEST(BFrameVideo, AviWithoutPtsGivesTheSameFrames) {
  auto r = sam3::VideoReader::open(kVideo + "bframes.avi");
  const json ref = reference();
  ASSERT_EQ(r->num_frames(), 20);
  EXPECT_EQ(r->width(), 64);
  EXPECT_EQ(r->height(), 48);
  EXPECT_EQ(r->describe(), "H.264 video, 20 frames, 25 fps");
  std::vector<int> order;
  for (int i = 0; i < 20; ++i) order.push_back(i);
  for (int i : {19, 0, 7, 7, 6, 12, 3, 18, 19, 1}) order.push_back(i);
  for (int i : order)
    EXPECT_EQ(crc(r->frame(i)), ref.at("crc32").at(i).get<uint32_t>()) << "frame " << i;
  expect_error([&] { r->frame(20); }, {"out of range"});
}

// The media data is cut at 60%: whatever opens decodes like the full file up
// to the cut, and every frame past it is an Error, never a crash.
TEST(BFrameVideo, TruncatedFileFailsCleanly) {
  const json ref = reference();
  auto r = sam3::VideoReader::open(kVideo + "truncated.mp4");
  ASSERT_GT(r->num_frames(), 0);
  ASSERT_LT(r->num_frames(), 20);
  int decoded = 0, failed = 0;
  for (int pass = 0; pass < 2; ++pass)  // forwards, then backwards
    for (int k = 0; k < r->num_frames(); ++k) {
      const int i = pass == 0 ? k : r->num_frames() - 1 - k;
      try {
        EXPECT_EQ(crc(r->frame(i)), ref.at("crc32").at(i).get<uint32_t>()) << "frame " << i;
        ++decoded;
      } catch (const sam3::Error& e) {
        EXPECT_NE(std::string(e.what()).find("truncated.mp4"), std::string::npos) << e.what();
        ++failed;
      }
    }
  EXPECT_GE(decoded, 2 * 5);  // the first keyframe group is intact
  EXPECT_GT(failed, 0);
}

}  // namespace
