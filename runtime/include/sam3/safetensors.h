// Read-only access to a .safetensors file: the header is parsed and checked at open,
// tensor bytes are read (pread) only when asked for.
//
// The file is read, not memory-mapped, so a file that is truncated or rewritten while the
// process loads it gives a sam3::Error, never SIGBUS (a mapping would fault on the pages
// past the new end). Reading straight into the destination also keeps the load peak at one
// copy of the weights.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace sam3 {

struct TensorView {
  std::string dtype;  // safetensors dtype: F32, I64, ...
  std::vector<int64_t> shape;
  uint64_t offset = 0;  // of the first byte, from the start of the file
  size_t nbytes = 0;
};

class SafeTensors {
 public:
  // Throws sam3::Error naming the file and the problem: missing or unreadable, header
  // length past the end or over 100 MB, header not JSON or not the format's object,
  // unknown dtype, negative or overflowing shape, offsets that disagree with the shape or
  // the file size, tensors whose bytes overlap.
  explicit SafeTensors(const std::string& path);
  ~SafeTensors();
  SafeTensors(const SafeTensors&) = delete;
  SafeTensors& operator=(const SafeTensors&) = delete;

  const TensorView& get(const std::string& name) const;  // throws if absent
  bool contains(const std::string& name) const { return tensors_.count(name) != 0; }
  size_t size() const { return tensors_.size(); }
  const std::map<std::string, TensorView>& tensors() const { return tensors_; }
  // Copies v's bytes to dst (v.nbytes of them); throws sam3::Error if the file no longer
  // holds them (truncated after it was opened) or cannot be read.
  void read(const TensorView& v, void* dst) const;
  std::vector<uint8_t> read(const TensorView& v) const;

 private:
  std::string path_;
  int fd_ = -1;
  std::map<std::string, TensorView> tensors_;
};

}  // namespace sam3
