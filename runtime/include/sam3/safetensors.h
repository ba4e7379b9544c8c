// Read-only view of a .safetensors file (memory-mapped; no copy until asked).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace sam3 {

struct TensorView {
  std::string dtype;  // safetensors dtype: F32, I64, ...
  std::vector<int64_t> shape;
  const uint8_t* data = nullptr;
  size_t nbytes = 0;
};

class SafeTensors {
 public:
  explicit SafeTensors(const std::string& path);  // throws sam3::Error
  ~SafeTensors();
  SafeTensors(const SafeTensors&) = delete;
  SafeTensors& operator=(const SafeTensors&) = delete;

  const TensorView& get(const std::string& name) const;  // throws if absent
  bool contains(const std::string& name) const { return tensors_.count(name) != 0; }
  size_t size() const { return tensors_.size(); }
  // Drop the mapped pages that lie wholly inside `v` from memory (they are re-read
  // from the file if touched again): once a tensor has been copied out, its pages
  // need not count towards the process's resident memory.
  void release(const TensorView& v) const;

 private:
  std::string path_;
  void* map_ = nullptr;
  size_t map_size_ = 0;
  std::map<std::string, TensorView> tensors_;
};

}  // namespace sam3
