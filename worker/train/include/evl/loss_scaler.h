// Dynamic loss scaling for FP16 training, with the semantics and defaults of PyTorch's GradScaler
// (what the official EVL code uses): the loss is multiplied by `scale` before backward; after the
// gradient all-reduce the gradients are divided by it and checked; a step with an inf/NaN gradient
// is skipped and the scale halved; after `growth_interval` good steps in a row it doubles.
// Gradients are identical on every rank after the all-reduce, so every rank decides alike.
#pragma once

#include <cstdint>
#include <vector>

#include <ATen/core/Tensor.h>

namespace evl {

class DynamicLossScaler {
 public:
  explicit DynamicLossScaler(double init_scale = 65536.0, double growth_factor = 2.0, double backoff_factor = 0.5,
                             int64_t growth_interval = 2000);
  double scale() const { return scale_; }
  int64_t good_steps() const { return good_steps_; }
  // Divides every defined gradient by the scale and returns a 0-dim float tensor on the
  // gradients' device, 1 if any is inf or NaN, without waiting for the device (ATen's fused
  // _amp_foreach_non_finite_check_and_unscale_ on CUDA, as GradScaler does).
  at::Tensor Unscale(const std::vector<at::Tensor>& params) const;
  // Unscale, then reads the flag back: true if any gradient is inf or NaN.
  bool UnscaleAndCheck(const std::vector<at::Tensor>& params) const;
  // After a step: back off on overflow, else count a good step and grow every growth_interval.
  void Update(bool found_inf);
  // For checkpoints.
  void Restore(double scale, int64_t good_steps);

 private:
  double scale_, growth_, backoff_;
  int64_t interval_, good_steps_ = 0;
};

}  // namespace evl
