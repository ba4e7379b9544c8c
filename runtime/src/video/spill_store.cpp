#include "video/spill_store.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "sam3/error.h"

namespace sam3 {
namespace video {

SpillStore::SpillStore(const std::string& dir) {
  dir_ = dir;
  if (dir_.empty()) {
    const char* t = std::getenv("TMPDIR");
    dir_ = t && *t ? t : "/tmp";
  }
  std::string path = dir_ + "/sam3-video-XXXXXX";
  std::vector<char> buf(path.begin(), path.end());
  buf.push_back('\0');
  fd_ = mkstemp(buf.data());
  if (fd_ < 0) throw Error("cannot create a spill file in " + dir_ + ": " + std::strerror(errno));
  unlink(buf.data());  // gone from the file system at once; freed when the session ends
}

SpillStore::~SpillStore() {
  if (fd_ >= 0) close(fd_);
}

int64_t SpillStore::put(const void* data, std::size_t bytes) {
  const int64_t at = end_;
  const char* p = static_cast<const char*>(data);
  std::size_t done = 0;
  while (done < bytes) {
    const ssize_t n = pwrite(fd_, p + done, bytes - done, at + static_cast<int64_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw Error("cannot write the video session's spill file in " + dir_ + ": " +
                            std::strerror(n < 0 ? errno : ENOSPC));
    done += static_cast<std::size_t>(n);
  }
  end_ += static_cast<int64_t>(bytes);
  return at;
}

void SpillStore::get(int64_t offset, void* data, std::size_t bytes) const {
  char* p = static_cast<char*>(data);
  std::size_t done = 0;
  while (done < bytes) {
    const ssize_t n = pread(fd_, p + done, bytes - done, offset + static_cast<int64_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw Error("cannot read the video session's spill file: " +
                            std::string(n < 0 ? std::strerror(errno) : "short read"));
    done += static_cast<std::size_t>(n);
  }
}

}  // namespace video
}  // namespace sam3
