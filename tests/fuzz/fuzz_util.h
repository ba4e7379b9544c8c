// Shared by the libFuzzer harnesses: a private scratch folder and file writing.
#pragma once
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <fstream>
#include <string>

namespace fuzz {

// One scratch folder per process (tmpfs when there is one: the harnesses write a file per
// input), created on first use.
inline const std::string& scratch() {
  static const std::string dir = [] {
    std::string base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    std::string tmpl = base + "/sam3_fuzz_XXXXXX";
    if (!mkdtemp(tmpl.data())) abort();
    return tmpl;
  }();
  return dir;
}

inline void write_file(const std::string& path, const uint8_t* data, size_t size) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
}

}  // namespace fuzz
