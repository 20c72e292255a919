#include "evl/loss_scaler.h"

#include <torch/torch.h>

namespace evl {

DynamicLossScaler::DynamicLossScaler(double init_scale, double growth_factor, double backoff_factor,
                                     int64_t growth_interval)
    : scale_(init_scale), growth_(growth_factor), backoff_(backoff_factor), interval_(growth_interval) {}

bool DynamicLossScaler::UnscaleAndCheck(const std::vector<at::Tensor>& params) const {
  torch::NoGradGuard ng;
  // One flag per gradient, read back once: a read per gradient would wait for the GPU ~100 times a step.
  std::vector<at::Tensor> finite;
  for (const auto& p : params) {
    auto g = p.grad();
    if (!g.defined()) continue;
    g.mul_(1.0 / scale_);
    finite.push_back(torch::isfinite(g).all());
  }
  return !finite.empty() && !torch::stack(finite).all().item<bool>();
}

void DynamicLossScaler::Update(bool found_inf) {
  if (found_inf) {
    scale_ *= backoff_;
    good_steps_ = 0;
    return;
  }
  if (++good_steps_ >= interval_) {
    scale_ *= growth_;
    good_steps_ = 0;
  }
}

void DynamicLossScaler::Restore(double scale, int64_t good_steps) {
  scale_ = scale;
  good_steps_ = good_steps;
}

}  // namespace evl
