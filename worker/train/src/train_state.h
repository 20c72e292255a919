// What a checkpoint holds of a training run, and back: the trainable parameters, AdamW's moments
// and step counts, the loss scaler, the best evaluation so far (so best.evlckpt survives a resume),
// plus the identity of the frozen backbone and the effective config.
#pragma once

#include <string>

#include <torch/torch.h>

#include "evl/checkpoint_format.h"
#include "evl/loss_scaler.h"
#include "evl/model.h"
#include "evl_config.pb.h"

namespace evl {

struct TrainState {
  EVLTransformer& model;
  torch::optim::AdamW& optimizer;
  DynamicLossScaler* scaler;  // null without FP16
  double best_top1 = -1;      // eval top-1 over all videos of the best evaluation; -1: none yet
  int64_t best_step = -1;     // the step it was evaluated after
  double elapsed_s = 0;       // training time up to the snapshot, across restarts
};

CheckpointState Snapshot(const TrainState& state, const EvlConfig& config, int64_t next_step, int world, double lr);
// Throws CheckpointError naming `path` and the tensor when the model's parameters are missing or
// differ in shape.
void Restore(const CheckpointState& saved, TrainState* state, const std::string& path);

}  // namespace evl
