#include "evl/train_step.h"

#include <torch/torch.h>

#include "evl/loss_scaler.h"
#include "evl/model.h"

namespace evl {

TrainStep::TrainStep(EVLTransformerImpl& model, torch::optim::Optimizer& optimizer, std::vector<at::Tensor> params,
                     DynamicLossScaler* scaler, StepOptions options)
    : model_(model), optimizer_(optimizer), params_(std::move(params)), scaler_(scaler), options_(options) {}

at::Tensor TrainStep::ForwardBackward(const at::Tensor& clips, const at::Tensor& labels,
                                      const std::function<void()>& before_last_backward) {
  const torch::Device device = model_.parameters().front().device();
  const int splits = options_.batch_split;
  const int64_t micro = clips.size(0) / splits;
  optimizer_.zero_grad();
  auto totals = torch::zeros({3}, torch::TensorOptions().dtype(torch::kDouble).device(device));
  for (int j = 0; j < splits; ++j) {
    auto x = clips.narrow(0, j * micro, micro).to(device, /*non_blocking=*/true);
    auto y = labels.narrow(0, j * micro, micro).to(device, /*non_blocking=*/true);
    if (j == splits - 1 && before_last_backward) before_last_backward();
    torch::Tensor logits;
    {
      AutocastScope autocast(options_.cuda, options_.autocast);
      logits = model_.forward(x);
    }
    logits = logits.to(torch::kFloat);  // the loss in FP32, as autocast would compute it
    auto loss = torch::nn::functional::cross_entropy(
                    logits, y, torch::nn::functional::CrossEntropyFuncOptions().label_smoothing(options_.label_smoothing)) /
                splits;
    (scaler_ ? loss * scaler_->scale() : loss).backward();
    auto top = std::get<1>(logits.detach().topk(std::min<int64_t>(5, logits.size(1)), 1));
    totals += torch::stack({loss.detach().to(torch::kDouble), top.select(1, 0).eq(y).sum().to(torch::kDouble),
                            top.eq(y.unsqueeze(1)).any(1).sum().to(torch::kDouble)});
  }
  return totals;
}

namespace {

// 1 if any of the tensors holds a NaN/Inf, as a 0-dim float tensor on their device (no sync).
// Each defined tensor's L2 norm, stacked (float, on their device); undefined when there is none.
at::Tensor Norms(const std::vector<at::Tensor>& tensors) {
  std::vector<at::Tensor> norms;
  for (const auto& t : tensors)
    if (t.defined()) norms.push_back(t.detach().norm().to(torch::kFloat));
  return norms.empty() ? at::Tensor() : torch::stack(norms);
}

at::Tensor AnyNonFinite(const std::vector<at::Tensor>& tensors, const at::TensorOptions& options) {
  const at::Tensor norms = Norms(tensors);
  if (!norms.defined()) return torch::zeros({}, options.dtype(torch::kFloat));
  return norms.isfinite().all().logical_not().to(torch::kFloat);
}

std::vector<at::Tensor> Grads(const std::vector<at::Tensor>& params) {
  std::vector<at::Tensor> grads;
  for (const auto& p : params) grads.push_back(p.grad());
  return grads;
}

}  // namespace

at::Tensor TrainStep::Unscale() {
  if (scaler_) return scaler_->Unscale(params_).reshape({});
  // Without a scaler nothing else looks: a NaN/Inf gradient would be applied and poison every
  // parameter. One reduction over the (small) decoder's gradients, read with the step's metrics.
  return AnyNonFinite(Grads(params_), params_.front().options());
}

double TrainStep::GradNorm() const {
  const at::Tensor norms = Norms(Grads(params_));
  return norms.defined() ? norms.norm().item<double>() : 0.0;
}

at::Tensor TrainStep::ParametersNonFinite() const { return AnyNonFinite(params_, params_.front().options()); }

bool TrainStep::Apply(bool overflow) {
  if (!overflow) {
    if (options_.grad_clip > 0) torch::nn::utils::clip_grad_norm_(params_, options_.grad_clip);
    optimizer_.step();
  }
  if (scaler_) scaler_->Update(overflow);
  return !overflow;
}

}  // namespace evl
