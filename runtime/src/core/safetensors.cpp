#include "sam3/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

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
  throw Error("unsupported safetensors dtype " + d);
}

}  // namespace

SafeTensors::SafeTensors(const std::string& path) : path_(path) {
  int fd = open(path.c_str(), O_RDONLY);
  if (fd < 0) throw Error("cannot open weights " + path + ": " + std::strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0 || st.st_size < 8) {
    close(fd);
    throw Error("weights file " + path + " is truncated or unreadable");
  }
  map_size_ = static_cast<size_t>(st.st_size);
  map_ = mmap(nullptr, map_size_, PROT_READ, MAP_PRIVATE, fd, 0);
  close(fd);
  if (map_ == MAP_FAILED) {
    map_ = nullptr;
    throw Error("cannot map weights " + path);
  }
  const auto* base = static_cast<const uint8_t*>(map_);
  uint64_t header_len = 0;
  std::memcpy(&header_len, base, 8);  // little-endian u64, as the format specifies
  if (header_len > map_size_ - 8) throw Error("weights file " + path + " has a corrupt header");
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(base + 8, base + 8 + header_len);
  } catch (const std::exception& e) {
    throw Error("weights file " + path + " has a corrupt header: " + e.what());
  }
  const uint8_t* data = base + 8 + header_len;
  const size_t data_size = map_size_ - 8 - header_len;
  for (const auto& [name, info] : header.items()) {
    if (name == "__metadata__") continue;
    TensorView v;
    v.dtype = info.at("dtype").get<std::string>();
    v.shape = info.at("shape").get<std::vector<int64_t>>();
    auto off = info.at("data_offsets").get<std::vector<size_t>>();
    size_t numel = 1;
    for (auto d : v.shape) numel *= static_cast<size_t>(d);
    if (off.size() != 2 || off[1] < off[0] || off[1] > data_size ||
        off[1] - off[0] != numel * dtype_size(v.dtype))
      throw Error("weights file " + path + ": tensor " + name + " has inconsistent offsets");
    v.data = data + off[0];
    v.nbytes = off[1] - off[0];
    tensors_[name] = std::move(v);
  }
}

void SafeTensors::release(const TensorView& v) const {
  static const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  uintptr_t begin = (reinterpret_cast<uintptr_t>(v.data) + page - 1) / page * page;
  uintptr_t end = (reinterpret_cast<uintptr_t>(v.data) + v.nbytes) / page * page;
  if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);
}

SafeTensors::~SafeTensors() {
  if (map_) munmap(map_, map_size_);
}

const TensorView& SafeTensors::get(const std::string& name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) throw Error("weight " + name + " missing from " + path_);
  return it->second;
}

}  // namespace sam3
