// One training step's arithmetic, the single implementation used by `evl train` and by the model
// benchmark: the batch in train.batch_split micro-batches, each forward under autocast, the loss in
// FP32 (label smoothing), scaled by the dynamic loss scaler when there is one, backward; then the
// gradients unscaled and checked, clipped, and the optimizer step taken unless they overflowed.
//
// Gradient communication is not in here: the caller arms its reducer in `before_last_backward` and
// waits for it between ForwardBackward and Unscale, so the loop shows where the ranks meet.
#pragma once

#include <functional>
#include <vector>

#include <ATen/core/Tensor.h>

#include "evl/autocast.h"

namespace torch::optim {
class Optimizer;
}

namespace evl {

class DynamicLossScaler;
class EVLTransformerImpl;

struct StepOptions {
  int batch_split = 1;
  double label_smoothing = 0;
  AutocastDtype autocast = AutocastDtype::kOff;
  bool cuda = false;
  double grad_clip = 0;  // 0: off
};

class TrainStep {
 public:
  // `params` are the trainable parameters the optimizer owns; `scaler` may be null (FP32/BF16).
  TrainStep(EVLTransformerImpl& model, torch::optim::Optimizer& optimizer, std::vector<at::Tensor> params,
            DynamicLossScaler* scaler, StepOptions options);

  // Zeroes the gradients, then forward and backward over the micro-batches of (clips, labels), on
  // the model's device. Returns, on the device and without waiting for it, [loss, top-1 hits,
  // top-5 hits] as doubles (the loss averaged over micro-batches, hits summed).
  at::Tensor ForwardBackward(const at::Tensor& clips, const at::Tensor& labels,
                             const std::function<void()>& before_last_backward = nullptr);
  // Divides the gradients by the loss scale (if there is a scaler); a 0-dim tensor on the device, 1
  // if any gradient is inf/NaN. Call after the gradients are final (all-reduced).
  at::Tensor Unscale();
  // A 0-dim tensor on the device, 1 if an update has made a parameter inf/NaN (a finite gradient
  // times a huge learning rate): nothing after that step can be trusted or saved.
  at::Tensor ParametersNonFinite() const;
  // The L2 norm of the current gradients (a host sync: for progress lines, not every step).
  double GradNorm() const;
  // With the overflow flag read back: clips and steps unless it overflowed, then updates the
  // scaler. Returns whether the step was taken.
  bool Apply(bool overflow);

 private:
  EVLTransformerImpl& model_;
  torch::optim::Optimizer& optimizer_;
  std::vector<at::Tensor> params_;
  DynamicLossScaler* scaler_;
  StepOptions options_;
};

}  // namespace evl
