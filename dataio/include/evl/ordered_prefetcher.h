// Work items 0, 1, ..., count-1 produced on a pool of threads, at most `ahead` items beyond the
// consumer, and handed over strictly in order: what the consumer sees does not depend on the number
// of threads or on timing. The training loader (items are a step's samples) and the evaluation
// (items are videos) both decode through it.
//
// Each thread owns one `ThreadState` (a VideoReader: its buffers and codec contexts are reused from
// item to item). The first exception a `produce` call throws stops the pool, and Next() rethrows
// it as it was (its type included); items after it are not delivered.
//
// Thread-safety: Next() and wait_s() from one consumer thread. The destructor stops the pool and
// joins the threads, each after the item in hand, also mid-sequence.
#pragma once

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

namespace evl {

template <typename T, typename ThreadState>
class OrderedPrefetcher {
 public:
  using Produce = std::function<T(int64_t k, ThreadState& state)>;

  OrderedPrefetcher(int64_t count, int threads, int64_t ahead, Produce produce)
      : count_(count), ahead_(std::max<int64_t>(1, ahead)), produce_(std::move(produce)) {
    for (int i = 0; i < std::max(1, threads); ++i) threads_.emplace_back([this] { Work(); });
  }
  ~OrderedPrefetcher() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    for (auto& t : threads_) t.join();
  }
  OrderedPrefetcher(const OrderedPrefetcher&) = delete;
  OrderedPrefetcher& operator=(const OrderedPrefetcher&) = delete;

  // Item k for k = 0, 1, ... in turn; false after the last one.
  bool Next(T* item) {
    const auto t0 = std::chrono::steady_clock::now();
    std::unique_lock<std::mutex> lock(mu_);
    if (next_out_ >= count_) return false;
    cv_.wait(lock, [&] { return error_ || ready_.count(next_out_) > 0; });
    if (error_) std::rethrow_exception(error_);
    auto it = ready_.find(next_out_++);
    *item = std::move(it->second);
    ready_.erase(it);
    wait_s_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    lock.unlock();
    cv_.notify_all();  // a thread may start the item that just came into the window
    return true;
  }

  // Seconds Next() has spent waiting for items.
  double wait_s() const {
    std::lock_guard<std::mutex> lock(mu_);
    return wait_s_;
  }
  // Seconds the threads (summed) have spent waiting for room: the window was full, i.e. the
  // consumer, not production, was the bottleneck. Threads wait for nothing else.
  double room_wait_s() const {
    std::lock_guard<std::mutex> lock(mu_);
    return room_wait_s_;
  }
  int threads() const { return static_cast<int>(threads_.size()); }
  // Threads waiting for room right now.
  int waiting_for_room() const {
    std::lock_guard<std::mutex> lock(mu_);
    return waiting_for_room_;
  }

 private:
  void Work() {
    ThreadState state;
    while (true) {
      int64_t k;
      {
        std::unique_lock<std::mutex> lock(mu_);
        // The one place a thread waits: for room in the window (every item up to `ahead` beyond
        // the consumer is made or being made). Only a wait that happens is counted.
        auto go = [&] { return stop_ || next_job_ >= count_ || next_job_ < next_out_ + ahead_; };
        if (!go()) {
          const auto t0 = std::chrono::steady_clock::now();
          ++waiting_for_room_;
          cv_.wait(lock, go);
          --waiting_for_room_;
          room_wait_s_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        }
        if (stop_ || next_job_ >= count_) return;
        k = next_job_++;
      }
      try {
        T item = produce_(k, state);
        std::lock_guard<std::mutex> lock(mu_);
        ready_.emplace(k, std::move(item));
      } catch (...) {
        std::lock_guard<std::mutex> lock(mu_);
        if (!error_) error_ = std::current_exception();
        stop_ = true;
      }
      cv_.notify_all();
    }
  }

  const int64_t count_, ahead_;
  const Produce produce_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::map<int64_t, T> ready_;
  int64_t next_job_ = 0, next_out_ = 0;
  bool stop_ = false;
  std::exception_ptr error_;
  double wait_s_ = 0, room_wait_s_ = 0;
  int waiting_for_room_ = 0;
  std::vector<std::thread> threads_;  // last: started after every member above exists
};

}  // namespace evl
