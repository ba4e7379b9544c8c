// The encoded images of recent requests, keyed by a hash of the image bytes, so that
// repeated clicks on one image run the image encoder once (`sam3 serve`).
#pragma once

#include <cstddef>
#include <functional>
#include <future>
#include <list>
#include <map>
#include <mutex>
#include <string>

#include "sam3/sam3.h"

namespace sam3::serve {

class ImageCache {
 public:
  explicit ImageCache(std::size_t capacity) : capacity_(capacity) {}

  // The encoded image for `key`, from the cache or made by `encode` (then kept, the least
  // recently used entry dropped beyond `capacity`). Requests for a key being encoded wait
  // for that encoding instead of starting another. An encode that throws is not kept and
  // its error reaches every waiter. `hit` says whether no encoding was started for this call.
  ImageState get(const std::string& key, const std::function<ImageState()>& encode, bool* hit = nullptr);

  struct Stats {
    std::size_t entries = 0, capacity = 0, hits = 0, misses = 0;
  };
  Stats stats() const;

 private:
  struct Entry {
    std::shared_future<ImageState> value;
    std::list<std::string>::iterator order;
  };
  const std::size_t capacity_;
  mutable std::mutex mu_;
  std::map<std::string, Entry> entries_;
  std::list<std::string> order_;  // most recent first
  std::size_t hits_ = 0, misses_ = 0;
};

}  // namespace sam3::serve
