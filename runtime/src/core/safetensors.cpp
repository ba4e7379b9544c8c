#include "sam3/safetensors.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>

#include "sam3/error.h"

namespace sam3 {
namespace {

size_t dtype_size(const std::string& d) {
  if (d == "F32" || d == "I32" || d == "U32") return 4;
  if (d == "F64" || d == "I64" || d == "U64") return 8;
  if (d == "F16" || d == "BF16" || d == "I16" || d == "U16") return 2;
  if (d == "BOOL" || d == "U8" || d == "I8") return 1;
  return 0;
}

// The format's own cap (the reference implementation refuses larger headers): a corrupt
// length must not make us allocate gigabytes.
constexpr uint64_t kMaxHeader = 100u << 20;

// Reads exactly n bytes at offset; false on a short read (end of file) or an error.
bool pread_all(int fd, void* dst, size_t n, uint64_t offset) {
  auto* p = static_cast<uint8_t*>(dst);
  while (n > 0) {
    ssize_t got = pread(fd, p, n, static_cast<off_t>(offset));
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) return false;
    p += got;
    n -= static_cast<size_t>(got);
    offset += static_cast<uint64_t>(got);
  }
  return true;
}

}  // namespace

SafeTensors::SafeTensors(const std::string& path) : path_(path) {
  fd_ = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd_ < 0) throw Error("cannot open weights " + path + ": " + std::strerror(errno));
  auto fail = [&](const std::string& why) {
    close(fd_);
    fd_ = -1;
    throw Error("weights file " + path + " " + why);
  };
  struct stat st;
  if (fstat(fd_, &st) != 0 || !S_ISREG(st.st_mode)) fail("is not a readable file");
  const uint64_t file_size = static_cast<uint64_t>(st.st_size);
  uint64_t header_len = 0;  // little-endian u64, as the format specifies
  if (file_size < 8 || !pread_all(fd_, &header_len, 8, 0)) fail("is truncated (no header)");
  if (header_len > file_size - 8) fail("has a corrupt header (its length runs past the end)");
  if (header_len > kMaxHeader) fail("has a corrupt header (longer than 100 MB)");
  std::string text(header_len, '\0');
  if (!pread_all(fd_, text.data(), header_len, 8)) fail("could not be read");
  const uint64_t data_start = 8 + header_len, data_size = file_size - data_start;
  struct Span {
    uint64_t begin, end;
    const std::string* name;
  };
  std::vector<Span> spans;
  try {
    nlohmann::json header = nlohmann::json::parse(text);
    if (!header.is_object()) fail("has a corrupt header (not a JSON object)");
    for (const auto& [name, info] : header.items()) {
      if (name == "__metadata__") continue;
      const std::string where = "tensor " + name + ": ";
      if (!info.is_object()) fail("has a corrupt header (" + where + "not an object)");
      TensorView v;
      v.dtype = info.at("dtype").get<std::string>();
      const size_t esize = dtype_size(v.dtype);
      if (esize == 0) fail("has an unsupported dtype (" + where + v.dtype + ")");
      v.shape = info.at("shape").get<std::vector<int64_t>>();
      const auto off = info.at("data_offsets").get<std::vector<uint64_t>>();
      uint64_t nbytes = esize;
      for (int64_t d : v.shape) {
        if (d < 0) fail("has a corrupt header (" + where + "negative dimension)");
        if (__builtin_mul_overflow(nbytes, static_cast<uint64_t>(d), &nbytes))
          fail("has a corrupt header (" + where + "shape too large)");
      }
      if (off.size() != 2 || off[1] < off[0] || off[1] > data_size)
        fail("has inconsistent offsets (" + where + "outside the data, or the file is truncated)");
      if (off[1] - off[0] != nbytes)
        fail("has inconsistent offsets (" + where + "its byte count disagrees with its shape)");
      v.offset = data_start + off[0];
      v.nbytes = static_cast<size_t>(nbytes);
      auto [it, added] = tensors_.emplace(name, std::move(v));
      if (nbytes > 0) spans.push_back({off[0], off[1], &it->first});
    }
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    fail(std::string("has a corrupt header: ") + e.what());
  }
  std::sort(spans.begin(), spans.end(), [](const Span& a, const Span& b) { return a.begin < b.begin; });
  for (size_t i = 1; i < spans.size(); ++i)
    if (spans[i].begin < spans[i - 1].end)
      fail("has overlapping tensors (" + *spans[i - 1].name + " and " + *spans[i].name + ")");
}

SafeTensors::~SafeTensors() {
  if (fd_ >= 0) close(fd_);
}

const TensorView& SafeTensors::get(const std::string& name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) throw Error("weight " + name + " missing from " + path_);
  return it->second;
}

void SafeTensors::read(const TensorView& v, void* dst) const {
  if (!pread_all(fd_, dst, v.nbytes, v.offset))
    throw Error("weights file " + path_ + " could not be read at " + std::to_string(v.offset) +
                " (" + std::to_string(v.nbytes) + " bytes): it was truncated or changed after it was opened");
}

std::vector<uint8_t> SafeTensors::read(const TensorView& v) const {
  std::vector<uint8_t> out(v.nbytes);
  read(v, out.data());
  return out;
}

}  // namespace sam3
