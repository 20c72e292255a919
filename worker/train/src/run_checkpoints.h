// When and where a training run saves (rank 0 writes; the other ranks hold an inert instance):
// every train.save_freq steps, at the last step and on a stop signal, through one background
// writer that keeps the newest train.keep_last files; and best.evlckpt after an evaluation that beat
// the best top-1 so far (eval.keep_best), through the same writer, so neither kind of write holds up
// the training thread longer than taking the host copy (and waiting for a write still in flight).
#pragma once

#include <cstdint>
#include <memory>

#include "evl/checkpoint_manager.h"
#include "evl/evaluator.h"
#include "evl_config.pb.h"
#include "train_state.h"

namespace evl {

class RunCheckpoints {
 public:
  // `writer`: this rank writes (rank 0). `config` must outlive this object.
  RunCheckpoints(const EvlConfig& config, int world, bool writer);
  RunCheckpoints(const RunCheckpoints&) = delete;
  RunCheckpoints& operator=(const RunCheckpoints&) = delete;

  // After an evaluation of step `step`: a new best top-1 is recorded in `state` and saved.
  void MaybeSaveBest(const EvalReport& report, int64_t step, TrainState* state, double lr);

  // After step `step` (1-based): saves when the cadence, the last step or `stop` says so. On a stop
  // it waits for the write, logs its outcome (the job is about to end) and returns whether it is on
  // disk; true otherwise, and on the ranks that do not write.
  bool MaybeSave(int64_t step, const TrainState& state, double lr, bool stop);

  // Waits for the writes in flight. False (and logged) if the last one failed.
  bool Finish();

 private:
  const EvlConfig& config_;
  int world_;
  std::unique_ptr<AsyncCheckpointer> writer_;  // null on the ranks that do not write
};

}  // namespace evl
