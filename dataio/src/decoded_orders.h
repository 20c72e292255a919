// Internal: the frame order decoding gave, for files whose packets could not say which frame is
// which (see VideoReader::Open), shared by every reader of the process — a file a loader thread has
// decoded from the start once is known to every other thread — and bounded: the least recently used
// file is forgotten first, so a corpus larger than the bound costs one extra decode per forgotten
// file, never a wholesale clear.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace evl {

class DecodedOrders {
 public:
  explicit DecodedOrders(size_t capacity) : capacity_(capacity) {}

  // The remembered order of `path`, which now counts as the most recently used.
  std::optional<std::vector<int64_t>> Find(const std::string& path) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = orders_.find(path);
    if (it == orders_.end()) return std::nullopt;
    it->second.last_use = ++uses_;
    return it->second.order;
  }

  void Remember(const std::string& path, std::vector<int64_t> order) {
    std::lock_guard<std::mutex> lock(mu_);
    if (orders_.size() >= capacity_ && !orders_.count(path)) {
      auto oldest = orders_.begin();
      for (auto it = orders_.begin(); it != orders_.end(); ++it)
        if (it->second.last_use < oldest->second.last_use) oldest = it;
      orders_.erase(oldest);
    }
    orders_[path] = {std::move(order), ++uses_};
  }

  size_t size() const {
    std::lock_guard<std::mutex> lock(mu_);
    return orders_.size();
  }

  // The one table every VideoReader of the process uses.
  static DecodedOrders& Shared();

 private:
  struct Entry {
    std::vector<int64_t> order;
    uint64_t last_use = 0;
  };
  const size_t capacity_;
  mutable std::mutex mu_;
  std::map<std::string, Entry> orders_;
  uint64_t uses_ = 0;
};

}  // namespace evl
