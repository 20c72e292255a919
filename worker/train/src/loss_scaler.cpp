#include "evl/loss_scaler.h"

#include <torch/torch.h>

namespace evl {

DynamicLossScaler::DynamicLossScaler(double init_scale, double growth_factor, double backoff_factor,
                                     int64_t growth_interval)
    : scale_(init_scale), growth_(growth_factor), backoff_(backoff_factor), interval_(growth_interval) {}

at::Tensor DynamicLossScaler::Unscale(const std::vector<at::Tensor>& params) const {
  torch::NoGradGuard ng;
  std::vector<at::Tensor> grads;
  for (const auto& p : params)
    if (p.grad().defined()) grads.push_back(p.grad());
  if (grads.empty()) return torch::zeros({}, torch::kFloat);
  const auto opts = grads.front().options().dtype(torch::kFloat);
  auto found_inf = torch::zeros({1}, opts);
  if (grads.front().is_cuda()) {
    at::_amp_foreach_non_finite_check_and_unscale_(grads, found_inf, torch::full({1}, 1.0 / scale_, opts));
    return found_inf.reshape({});
  }
  // The CPU kernel of the fused op arrived after LibTorch 1.13: the same arithmetic, one op at a time.
  std::vector<at::Tensor> finite;
  for (auto& g : grads) {
    g.mul_(1.0 / scale_);
    finite.push_back(torch::isfinite(g).all());
  }
  return torch::logical_not(torch::stack(finite).all()).to(torch::kFloat);
}

bool DynamicLossScaler::UnscaleAndCheck(const std::vector<at::Tensor>& params) const {
  return Unscale(params).item<float>() > 0;
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
