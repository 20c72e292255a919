#include "evl/loss_scaler.h"

#include <torch/torch.h>

namespace evl {

DynamicLossScaler::DynamicLossScaler(double init_scale, double growth_factor, double backoff_factor,
                                     int64_t growth_interval)
    : scale_(init_scale), growth_(growth_factor), backoff_(backoff_factor), interval_(growth_interval) {}

bool DynamicLossScaler::UnscaleAndCheck(const std::vector<at::Tensor>& params) const {
  torch::NoGradGuard ng;
  bool found_inf = false;
  for (const auto& p : params) {
    auto g = p.grad();
    if (!g.defined()) continue;
    g.mul_(1.0 / scale_);
    if (!found_inf && !torch::isfinite(g).all().item<bool>()) found_inf = true;
  }
  return found_inf;
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
