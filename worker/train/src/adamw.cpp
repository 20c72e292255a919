#include "evl/adamw.h"

#include <torch/torch.h>

#include <cmath>
#include <map>

namespace evl {

namespace {

struct Slices {  // one group's parameters that share a step count, and their state
  std::vector<at::Tensor> params, grads, exp_avg, exp_avg_sq;
};

}  // namespace

torch::Tensor MultiTensorAdamW::step(LossClosure closure) {
  for (auto& group : param_groups_) {
    const auto& o = static_cast<const torch::optim::AdamWOptions&>(group.options());
    bool fallback = o.amsgrad();
    for (const auto& p : group.params()) fallback = fallback || (p.grad().defined() && p.grad().is_sparse());
    if (fallback) return torch::optim::AdamW::step(std::move(closure));  // the rare case, whole
  }
  torch::NoGradGuard no_grad;
  torch::Tensor loss;
  if (closure) {
    at::AutoGradMode enable_grad(true);
    loss = closure();
  }
  for (auto& group : param_groups_) {
    const auto& o = static_cast<const torch::optim::AdamWOptions&>(group.options());
    const double beta1 = std::get<0>(o.betas()), beta2 = std::get<1>(o.betas());
    // Bias corrections depend on each parameter's own step count; parameters that skipped a step
    // (no gradient then) are updated with their own, as LibTorch does.
    std::map<int64_t, Slices> by_step;
    for (auto& p : group.params()) {
      if (!p.grad().defined()) continue;
      const std::string key = c10::guts::to_string(p.unsafeGetTensorImpl());  // LibTorch's state key
      auto it = state_.find(key);
      if (it == state_.end()) {
        auto fresh = std::make_unique<torch::optim::AdamWParamState>();
        fresh->step(0);
        fresh->exp_avg(torch::zeros_like(p, at::MemoryFormat::Preserve));
        fresh->exp_avg_sq(torch::zeros_like(p, at::MemoryFormat::Preserve));
        it = state_.emplace(key, std::move(fresh)).first;
      }
      auto& st = static_cast<torch::optim::AdamWParamState&>(*it->second);
      st.step(st.step() + 1);
      Slices& s = by_step[st.step()];
      s.params.push_back(p);
      s.grads.push_back(p.grad());
      s.exp_avg.push_back(st.exp_avg());
      s.exp_avg_sq.push_back(st.exp_avg_sq());
    }
    for (auto& [step, s] : by_step) {
      const double bias_correction1 = 1 - std::pow(beta1, static_cast<double>(step));
      const double bias_correction2 = 1 - std::pow(beta2, static_cast<double>(step));
      if (o.weight_decay() != 0) at::_foreach_mul_(s.params, 1 - o.lr() * o.weight_decay());
      at::_foreach_mul_(s.exp_avg, beta1);
      at::_foreach_add_(s.exp_avg, s.grads, 1 - beta1);
      at::_foreach_mul_(s.exp_avg_sq, beta2);
      at::_foreach_addcmul_(s.exp_avg_sq, s.grads, s.grads, 1 - beta2);
      auto denom = at::_foreach_sqrt(s.exp_avg_sq);
      at::_foreach_div_(denom, std::sqrt(bias_correction2));
      at::_foreach_add_(denom, o.eps());
      at::_foreach_addcdiv_(s.params, s.exp_avg, denom, -o.lr() / bias_correction1);
    }
  }
  return loss;
}

}  // namespace evl
