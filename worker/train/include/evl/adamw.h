// AdamW over all of a group's parameters at once: the same update as torch::optim::AdamW (LibTorch's
// C++ one: decoupled weight decay, bias-corrected moments, eps added after the square root), in
// the same state objects, so checkpoints and everything that reads the optimizer's state are
// unchanged. Each of the update's steps is one multi-tensor operation (at::_foreach_*) over the
// group instead of a handful of kernels per parameter: on a GPU that is a few fused launches for
// the decoder's ~100 tensors instead of ~1000 small ones; on a CPU the same arithmetic, bit for bit.
#pragma once

#include <torch/optim/adamw.h>

namespace evl {

class MultiTensorAdamW : public torch::optim::AdamW {
 public:
  using torch::optim::AdamW::AdamW;
  // Groups with amsgrad, or parameters with sparse gradients, take LibTorch's own step.
  torch::Tensor step(LossClosure closure = nullptr) override;
};

}  // namespace evl
