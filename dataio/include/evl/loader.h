// The loader: a pool of decode threads (evl/ordered_prefetcher.h) filling a bounded window of
// batches, handed over in step order.
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
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include <ATen/core/Tensor.h>

#include "evl/dataset.h"
#include "evl/ordered_prefetcher.h"

namespace evl {

class VideoReader;

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
  double room_wait_s = 0;    // decode threads' time (summed) waiting for room: every batch ahead decoded
  int workers = 0;           // decode threads
  double elapsed_s = 0;      // since construction
};

class Loader {
 public:
  using SampleFn = std::function<std::vector<int64_t>(int64_t step)>;

  // `pin_memory`: the decode threads write each batch straight into page-locked host memory, so
  // the training thread's copy to a GPU can be asynchronous (REQUIRES a LibTorch with CUDA).
  // Every step has as many samples as `first_step` (the per-rank batch).
  Loader(std::shared_ptr<const VideoClipDataset> dataset, SampleFn samples_for_step, int64_t first_step,
         int64_t end_step, int num_workers, int prefetch_batches, bool pin_memory = false);
  ~Loader();
  Loader(const Loader&) = delete;
  Loader& operator=(const Loader&) = delete;

  // The next batch in step order; false after end_step. Rethrows a worker's fatal DataError (most
  // videos fail) or, for anything unexpected, a runtime_error naming the video and the step.
  bool Next(Batch* batch);
  LoaderCounters counters() const;

 private:
  // A step being decoded: its samples, and the batch tensor each decode thread writes its row of.
  struct StepBatch {
    std::vector<int64_t> indices;
    at::Tensor clips;  // [B, ...], allocated by the first decode thread that finishes a clip
  };
  // Decodes sample `k` (step first_step + k / B, row k % B) into its batch row; returns the
  // dataset index actually used (after replacement).
  int64_t DecodeSample(int64_t k, class VideoReader& reader);
  at::Tensor LoadWithReplacement(int64_t step, int64_t index, class VideoReader& reader, int64_t* used);

  std::shared_ptr<const VideoClipDataset> dataset_;
  SampleFn samples_for_step_;
  const int64_t first_step_, end_step_;
  const bool pin_memory_;
  int64_t batch_ = 0;  // samples per step
  int64_t next_out_step_;
  std::atomic<bool> stopping_{false};
  mutable std::mutex mu_;  // guards what follows
  std::map<int64_t, StepBatch> steps_;
  int64_t attempts_ = 0, failures_ = 0, clips_ = 0;
  std::map<std::string, bool> reported_;
  std::chrono::steady_clock::time_point start_;
  std::unique_ptr<OrderedPrefetcher<int64_t, VideoReader>> prefetcher_;  // last: stopped first
};

}  // namespace evl
