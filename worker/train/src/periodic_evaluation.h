// When a training run evaluates: every train.eval_freq steps and after the last one, when there is
// a data.val_list, never on the step a stop signal ends. Every rank takes part (the evaluation is
// distributed); rank 0 logs, records the metrics and writes RUN_DIR/eval/.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include <torch/torch.h>

#include "evl/communicator.h"
#include "evl/evaluator.h"
#include "evl/model.h"
#include "evl/video_list.h"
#include "evl_config.pb.h"

namespace evl {

class MetricsLog;

class PeriodicEvaluation {
 public:
  // `videos`: the validation list, read once for the run (evl/dataset_lists.h); empty: never due.
  // `metrics` is rank 0's (null elsewhere). All references must outlive this object.
  PeriodicEvaluation(EVLTransformer& model, const EvlConfig& config, const std::vector<VideoEntry>& videos,
                     Communicator& comm, const torch::Device& device, MetricsLog* metrics);

  // Whether an evaluation is due after step `step` (1-based).
  bool Due(int64_t step, bool stop) const;
  // Evaluates when Due; the report on every rank.
  std::optional<EvalReport> MaybeRun(int64_t step, bool stop);

  // The last evaluation's top-1 over all videos and its step (-1: none yet).
  double last_top1() const { return last_top1_; }
  int64_t last_step() const { return last_step_; }

 private:
  EVLTransformer& model_;
  const EvlConfig& config_;
  const std::vector<VideoEntry>& videos_;
  Communicator& comm_;
  torch::Device device_;
  MetricsLog* metrics_;
  double last_top1_ = -1;
  int64_t last_step_ = -1;
};

}  // namespace evl
