// VideoReader::open and the folder-of-frames reader, ordered as the official
// loader orders them (sam3/model/io_utils.py, load_video_frames_from_image_folder):
//
//     frame_names = [p for p in os.listdir(folder)
//                    if os.path.splitext(p)[-1].lower() in IMAGE_EXTS]
//     try: frame_names.sort(key=lambda p: int(os.path.splitext(p)[0]))
//     except ValueError: frame_names.sort()
#include <algorithm>
#include <filesystem>
#include <system_error>
#include <vector>

#include "readers.h"
#include "sam3/error.h"
#include "sam3/limits.h"

namespace sam3 {

namespace fs = std::filesystem;

namespace video {
namespace {

const char* const kImageExts[] = {".jpg", ".jpeg", ".png", ".bmp", ".tiff", ".webp"};
const char* const kDecodable[] = {".jpg", ".jpeg", ".png"};  // what load_image reads
const char* const kVideoExts[] = {".mp4", ".mov", ".avi", ".mkv", ".webm"};

std::string ascii_lower(std::string s) {
  for (char& c : s)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return s;
}

template <size_t N>
bool one_of(const std::string& s, const char* const (&list)[N]) {
  return std::find(std::begin(list), std::end(list), s) != std::end(list);
}

// os.path.splitext on a bare file name: the extension starts at the last dot,
// unless everything before that dot is dots (".png" and "..png" have none).
void split_ext(const std::string& name, std::string* stem, std::string* ext) {
  const size_t dot = name.rfind('.');
  if (dot != std::string::npos && name.find_first_not_of('.') < dot) {
    *stem = name.substr(0, dot);
    *ext = name.substr(dot);
  } else {
    *stem = name;
    ext->clear();
  }
}

// The value of a stem that Python's int() accepts, as sign + decimal digits
// without leading zeros (so any length compares correctly).
struct IntKey {
  bool negative = false;
  std::string digits;  // "0" for zero
  bool operator<(const IntKey& o) const {
    if (negative != o.negative) return negative;
    const int mag = digits.size() != o.digits.size()
                        ? (digits.size() < o.digits.size() ? -1 : 1)
                        : digits.compare(o.digits);
    return negative ? mag > 0 : mag < 0;
  }
};

// int(s) for ASCII s: surrounding whitespace (" \t\n\v\f\r"), an optional sign,
// decimal digits with single underscores only between digits ("1_000").
// Leading zeros are fine ("007"). Non-ASCII digits and spaces, which Python also
// accepts, are treated as not an int (the folder then sorts by name).
bool parse_python_int(const std::string& s, IntKey* key) {
  const char* ws = " \t\n\v\f\r";
  const size_t b = s.find_first_not_of(ws);
  if (b == std::string::npos) return false;
  const size_t e = s.find_last_not_of(ws) + 1;
  size_t i = b;
  key->negative = false;
  if (s[i] == '+' || s[i] == '-') key->negative = s[i++] == '-';
  std::string digits;
  bool prev_digit = false;
  for (; i < e; ++i) {
    const char c = s[i];
    if (c >= '0' && c <= '9') {
      digits += c;
      prev_digit = true;
    } else if (c == '_' && prev_digit && i + 1 < e && s[i + 1] >= '0' && s[i + 1] <= '9') {
      prev_digit = false;
    } else {
      return false;
    }
  }
  if (digits.empty()) return false;
  const size_t nz = digits.find_first_not_of('0');
  key->digits = nz == std::string::npos ? "0" : digits.substr(nz);
  if (key->digits == "0") key->negative = false;  // int("-0") == 0
  return true;
}

// The frame files of `dir`, in the official order.
std::vector<std::string> frame_names(const std::string& dir) {
  std::vector<std::string> names;
  std::string undecodable;
  std::error_code ec;
  fs::directory_iterator it(dir, ec), end;
  if (ec) throw Error("cannot list folder " + dir + ": " + ec.message());
  for (; it != end; it.increment(ec)) {
    if (ec) throw Error("cannot list folder " + dir + ": " + ec.message());
    // Only files: the official loader would also pick up a sub-folder named
    // "3.png" and then fail to open it.
    std::error_code fec;
    if (!it->is_regular_file(fec)) continue;
    const std::string name = it->path().filename().string();
    std::string stem, ext;
    split_ext(name, &stem, &ext);
    ext = ascii_lower(ext);
    if (!one_of(ext, kImageExts)) continue;
    if (!one_of(ext, kDecodable) && (undecodable.empty() || name < undecodable)) undecodable = name;
    names.push_back(name);
    if (names.size() > static_cast<size_t>(kMaxVideoFrames))
      throw Error("folder " + dir + " holds more than " + std::to_string(kMaxVideoFrames) +
                  " frames (the limit)");
  }
  if (!undecodable.empty())
    throw Error("folder " + dir + " holds " + undecodable +
                ": only PNG and JPEG frames can be read (convert .bmp/.tiff/.webp frames first)");
  if (names.empty()) throw Error("no PNG/JPEG frames in " + dir);

  std::vector<std::pair<IntKey, std::string>> keyed;
  for (const std::string& name : names) {
    std::string stem, ext;
    split_ext(name, &stem, &ext);
    IntKey key;
    if (!parse_python_int(stem, &key)) {
      // Not "<frame_index>.<ext>" everywhere: lexicographic, as Python's str
      // sort (std::string compares bytes as unsigned, i.e. UTF-8 code points).
      std::sort(names.begin(), names.end());
      return names;
    }
    keyed.emplace_back(std::move(key), name);
  }
  // Equal numbers ("1.png", "01.jpg") keep os.listdir's order in Python, which
  // is the file system's; here they are ordered by name, so it is repeatable.
  std::sort(keyed.begin(), keyed.end(), [](const auto& a, const auto& b) {
    if (a.first < b.first) return true;
    if (b.first < a.first) return false;
    return a.second < b.second;
  });
  for (size_t i = 0; i < keyed.size(); ++i) names[i] = keyed[i].second;
  return names;
}

class FolderReader : public VideoReader {
 public:
  explicit FolderReader(const std::string& dir) : dir_(dir) {
    for (const std::string& name : frame_names(dir)) files_.push_back((fs::path(dir) / name).string());
    // Decode frame 0 now: its size is the video's, and a bad first frame fails early.
    const Image first = load_image(files_[0]);
    width_ = first.width;
    height_ = first.height;
  }
  int num_frames() const override { return static_cast<int>(files_.size()); }
  int width() const override { return width_; }
  int height() const override { return height_; }
  Image frame(int index) override {
    check_frame_index(index, num_frames(), dir_);
    Image img = load_image(files_[index]);
    check_frame_size(index, files_[index], img.width, img.height, width_, height_);
    return img;
  }
  std::string describe() const override {
    return "folder of " + std::to_string(files_.size()) + " PNG/JPEG frames";
  }

 private:
  std::string dir_;
  std::vector<std::string> files_;  // full paths, in frame order
  int width_ = 0, height_ = 0;
};

}  // namespace

std::unique_ptr<VideoReader> open_folder(const std::string& dir) {
  return std::make_unique<FolderReader>(dir);
}

void check_frame_index(int index, int count, const std::string& path) {
  if (index < 0 || index >= count)
    throw Error("frame index " + std::to_string(index) + " out of range: " + path + " has " +
                std::to_string(count) + " frames");
}

void check_frame_size(int index, const std::string& what, int w, int h, int w0, int h0) {
  if (w != w0 || h != h0)
    throw Error("frame " + std::to_string(index) + " (" + what + ") is " + std::to_string(w) +
                "x" + std::to_string(h) + ", but frame 0 is " + std::to_string(w0) + "x" +
                std::to_string(h0) + "; every frame of a video must have the same size");
}

}  // namespace video

std::unique_ptr<VideoReader> VideoReader::open(const std::string& path) {
  std::error_code ec;
  const auto status = fs::status(path, ec);
  if (status.type() == fs::file_type::not_found) throw Error("no such file or folder: " + path);
  if (ec) throw Error("cannot open " + path + ": " + ec.message());
  if (status.type() == fs::file_type::directory) return video::open_folder(path);
  std::string stem, ext;
  video::split_ext(fs::path(path).filename().string(), &stem, &ext);
  if (!video::one_of(video::ascii_lower(ext), video::kVideoExts))
    throw Error("not a folder of frames or a video file (.mp4 .mov .avi .mkv .webm): " + path);
  return video::open_video_file(path);
}

}  // namespace sam3
