// Where a session parks tracker data that no step of the running propagation can use
// (docs/video.md, "Memory"): an unlinked temporary file, so RAM stays bounded and a
// later prompt or propagation still finds the exact values. Internal.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>

namespace sam3 {
namespace video {

class SpillStore {
 public:
  explicit SpillStore(const std::string& dir = "");  // "" : $TMPDIR or /tmp
  ~SpillStore();
  SpillStore(const SpillStore&) = delete;
  SpillStore& operator=(const SpillStore&) = delete;

  // Appends `bytes` bytes; returns their offset. Throws sam3::Error (disk full, ...).
  int64_t put(const void* data, std::size_t bytes);
  void get(int64_t offset, void* data, std::size_t bytes) const;
  std::size_t size() const { return static_cast<std::size_t>(end_); }

 private:
  int fd_ = -1;
  int64_t end_ = 0;
  std::string dir_;
};

}  // namespace video
}  // namespace sam3
