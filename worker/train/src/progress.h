// The progress of a training run over the steps since the last report: clips/s, the shares of time
// spent waiting for data and for the other ranks, and how long the decode threads sat idle with
// every batch ahead ready. Every train.print_freq steps (and at the last) it reports: the console
// line and MetricsLog's window on rank 0, after an all-reduce of the skipped-video counts that
// every rank takes part in.
#pragma once

#include <chrono>
#include <cstdint>

#include <torch/torch.h>

#include "evl/communicator.h"
#include "evl/loader.h"
#include "evl_config.pb.h"

namespace evl {

class MetricsLog;
class DynamicLossScaler;
class TrainStep;

// What one step did, summed over the ranks.
struct StepResult {
  double loss = 0;             // mean over ranks of each rank's mean loss
  double top1 = 0, top5 = 0;   // percent of the step's clips
  int64_t clips = 0;           // in the global batch
  double lr = 0;
  bool overflow = false;       // inf/NaN gradients: the update was skipped
  bool update_nonfinite = false;  // the update made a parameter NaN/Inf
  bool stop = false;           // a rank got a stop signal
  double comm_wait_s = 0;      // this rank's time waiting for the others
};

class Progress {
 public:
  // `metrics` is rank 0's (null elsewhere); `scaler` may be null. All must outlive this object.
  Progress(const TrainConfig& train, Communicator& comm, Loader& loader, MetricsLog* metrics,
           const DynamicLossScaler* scaler, const TrainStep& train_step, const torch::Device& device,
           int64_t start_step);

  // The loader's next batch, counting the wait. False at the end of the data.
  bool NextBatch(Batch* batch);
  // Counts step `step` (0-based) and reports when it is due.
  void Record(int64_t step, const StepResult& result);

 private:
  using Clock = std::chrono::steady_clock;
  void Report(int64_t step, const StepResult& result);

  const TrainConfig& train_;
  Communicator& comm_;
  Loader& loader_;
  MetricsLog* metrics_;
  const DynamicLossScaler* scaler_;
  const TrainStep& train_step_;
  torch::Device device_;
  int64_t start_step_;
  Clock::time_point run_start_ = Clock::now(), window_start_ = Clock::now();
  double data_wait_s_ = 0, comm_wait_s_ = 0;
  double decoders_idle_s_ = 0;  // per decode thread
  double room_wait_seen_;       // the decode threads' summed room-wait at the last reading
  int decode_threads_;
  int64_t clips_ = 0;
};

}  // namespace evl
