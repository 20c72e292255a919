// The loader: a pool of decode threads filling a bounded queue of ready batches, in step order.
//
// Which samples make up step s is the caller's business (a pure function `samples_for_step`, the
// distributed sampler); the loader decodes them with per-sample randomness, so batches do not
// depend on thread count or timing. A sample whose video cannot be used is logged once with the
// reason and replaced by another sample chosen deterministically from (seed, step, index, try);
// if most attempts fail the loader stops with a DataError saying so.
//
// Thread-safety: Next() and counters() from one consumer thread; the destructor stops and joins
// the workers, also mid-epoch.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include <ATen/core/Tensor.h>

#include "evl/dataset.h"

namespace evl {

struct Batch {
  int64_t step = 0;
  at::Tensor clips;   // [B, 3, T, S, S] or [B, V, 3, T, S, S]
  at::Tensor labels;  // [B] int64
  std::vector<int64_t> indices;  // dataset index actually used for each row (after replacement)
};

struct LoaderCounters {
  int64_t clips = 0;         // samples delivered
  int64_t skipped = 0;       // attempts that failed (a sample replaced because its video failed)
  int64_t skipped_files = 0; // distinct videos among them
  double wait_s = 0;         // time Next() spent waiting for a batch
  double elapsed_s = 0;      // since construction
};

class Loader {
 public:
  using SampleFn = std::function<std::vector<int64_t>(int64_t step)>;

  // `pin_memory`: the decode threads write each batch straight into page-locked host memory, so
  // the training thread's copy to a GPU can be asynchronous (REQUIRES a LibTorch with CUDA).
  Loader(std::shared_ptr<const VideoClipDataset> dataset, SampleFn samples_for_step, int64_t first_step,
         int64_t end_step, int num_workers, int prefetch_batches, bool pin_memory = false);
  ~Loader();
  Loader(const Loader&) = delete;
  Loader& operator=(const Loader&) = delete;

  // The next batch in step order; false after end_step. Rethrows a worker's fatal DataError.
  bool Next(Batch* batch);
  LoaderCounters counters() const;

 private:
  struct Pending {
    std::vector<int64_t> indices;
    at::Tensor clips;  // [B, ...], allocated by the first decode thread that finishes a clip
    std::vector<int64_t> used;
    int remaining = 0;
  };
  void Work();
  at::Tensor LoadWithReplacement(int64_t step, int64_t index, class VideoReader& reader, int64_t* used);

  std::shared_ptr<const VideoClipDataset> dataset_;
  SampleFn samples_for_step_;
  const int64_t end_step_;
  const int prefetch_;
  const bool pin_memory_;
  mutable std::mutex mu_;
  std::condition_variable work_cv_, ready_cv_;
  std::map<int64_t, Pending> pending_;
  int64_t next_out_step_;       // the step Next() returns next
  int64_t next_job_step_;       // the next step whose samples are handed to workers
  size_t next_job_slot_ = 0;
  bool stop_ = false;
  std::string fatal_;
  bool fatal_is_data_ = true;  // most videos failing (DataError) vs. an unexpected exception
  int64_t attempts_ = 0, failures_ = 0, clips_ = 0;
  double wait_s_ = 0;
  std::map<std::string, bool> reported_;
  std::chrono::steady_clock::time_point start_;
  std::vector<std::thread> workers_;
};

}  // namespace evl
