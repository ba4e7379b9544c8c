// Frame-folder listing (sam3::VideoReader::open on a folder): the input is up to 12 file
// names, one per line, each created holding a 2x2 PNG; the reader lists, filters and
// orders them (integer stems, else by name) or refuses the folder with a sam3::Error.
#include <dirent.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "fuzz_util.h"
#include "sam3/error.h"
#include "sam3/video_reader.h"

namespace {

// A 2x2 RGB PNG, all black.
const uint8_t kPng[] = {0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48,
                        0x44, 0x52, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x02, 0x08, 0x02, 0x00, 0x00,
                        0x00, 0xfd, 0xd4, 0x9a, 0x73, 0x00, 0x00, 0x00, 0x0e, 0x49, 0x44, 0x41, 0x54, 0x78,
                        0x9c, 0x63, 0x60, 0x80, 0x80, 0x00, 0x00, 0x00, 0x12, 0x00, 0x01, 0x29, 0x8f, 0x6b,
                        0x4d, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82};

void empty_folder(const std::string& dir) {
  if (DIR* d = opendir(dir.c_str())) {
    while (dirent* e = readdir(d)) {
      const std::string n = e->d_name;
      if (n != "." && n != "..") unlink((dir + "/" + n).c_str());
    }
    closedir(d);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string dir = [] {
    const std::string d = fuzz::scratch() + "/frames";
    mkdir(d.c_str(), 0700);
    return d;
  }();
  empty_folder(dir);
  std::vector<std::string> names;
  std::string cur;
  for (size_t i = 0; i <= size && names.size() < 12; ++i) {
    const char c = i < size ? static_cast<char>(data[i]) : '\n';
    if (c == '\n') {
      if (!cur.empty() && cur != "." && cur != ".." && cur.size() < 200) names.push_back(cur);
      cur.clear();
    } else if (c != '/' && c != '\0') {
      cur += c;
    }
  }
  for (const auto& n : names) fuzz::write_file(dir + "/" + n, kPng, sizeof(kPng));
  try {
    auto r = sam3::VideoReader::open(dir);
    if (r->num_frames() <= 0 || r->num_frames() > static_cast<int>(names.size())) abort();
    sam3::Image f = r->frame(r->num_frames() - 1);
    if (f.width != 2 || f.height != 2) abort();
    (void)r->describe();
  } catch (const sam3::Error&) {
  }
  return 0;
}
