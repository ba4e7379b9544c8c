#include "image_cache.h"

namespace sam3::serve {

ImageState ImageCache::get(const std::string& key, const std::function<ImageState()>& encode, bool* hit) {
  std::promise<ImageState> made;
  std::shared_future<ImageState> value;
  bool found = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = entries_.find(key);
    if (it != entries_.end()) {
      order_.splice(order_.begin(), order_, it->second.order);
      ++hits_;
      found = true;
      value = it->second.value;
    } else {
      ++misses_;
      if (capacity_ == 0) {
        value = {};
      } else {
        value = made.get_future().share();
        order_.push_front(key);
        entries_[key] = Entry{value, order_.begin()};
        while (entries_.size() > capacity_) {
          entries_.erase(order_.back());
          order_.pop_back();
        }
      }
    }
  }
  if (hit) *hit = found;
  if (found) return value.get();  // rethrows an error of the encode it waited for
  if (capacity_ == 0) return encode();
  try {
    ImageState s = encode();
    made.set_value(s);
    return s;
  } catch (...) {
    made.set_exception(std::current_exception());
    std::lock_guard<std::mutex> lock(mu_);
    auto it = entries_.find(key);
    if (it != entries_.end() && it->second.value.valid() &&
        it->second.value.wait_for(std::chrono::seconds(0)) == std::future_status::ready) {
      // drop the failed entry (only ours: a later request may have replaced it)
      try {
        it->second.value.get();
      } catch (...) {
        order_.erase(it->second.order);
        entries_.erase(it);
      }
    }
    throw;
  }
}

ImageCache::Stats ImageCache::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return {entries_.size(), capacity_, hits_, misses_};
}

}  // namespace sam3::serve
