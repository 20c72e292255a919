#include "evl/grad_sync.h"

#include <torch/torch.h>

#include <chrono>

namespace evl {

GradientReducer::GradientReducer(std::vector<at::Tensor> params, Communicator* comm, double bucket_mb)
    : params_(std::move(params)), comm_(comm) {
  const int64_t cap = std::max<int64_t>(1, static_cast<int64_t>(bucket_mb * 1024 * 1024));
  bucket_of_.assign(params_.size(), -1);
  slot_of_.assign(params_.size(), -1);
  seen_.assign(params_.size(), false);
  int64_t bytes = cap;
  for (int i = static_cast<int>(params_.size()) - 1; i >= 0; --i) {
    const int64_t nbytes = params_[i].numel() * params_[i].element_size();
    if (buckets_.empty() || bytes + nbytes > cap) {
      buckets_.emplace_back();
      bytes = 0;
    }
    Bucket& b = buckets_.back();
    bucket_of_[i] = static_cast<int>(buckets_.size()) - 1;
    slot_of_[i] = static_cast<int>(b.params.size());
    b.offsets.push_back(b.params.empty() ? 0 : b.offsets.back() + params_[b.params.back()].numel());
    b.params.push_back(i);
    bytes += nbytes;
  }
  for (auto& b : buckets_) {
    const int64_t n = b.offsets.back() + params_[b.params.back()].numel();
    b.flat = torch::zeros({n}, params_[b.params.front()].options().requires_grad(false));
  }
  for (size_t i = 0; i < params_.size(); ++i) {
    const int idx = static_cast<int>(i);
    hooks_.push_back(params_[i].register_hook([this, idx](const at::Tensor& g) { OnGrad(idx, g); }));
  }
}

GradientReducer::~GradientReducer() {
  // The hooks capture `this`; parameters outlive the reducer (a benchmark or test builds several).
  for (size_t i = 0; i < params_.size(); ++i) params_[i].remove_hook(hooks_[i]);
}

void GradientReducer::Prepare() {
  armed_ = true;
  next_launch_ = 0;
  launch_order_.clear();
  std::fill(seen_.begin(), seen_.end(), false);
  for (auto& b : buckets_) {
    b.pending = static_cast<int>(b.params.size());
    b.launched = false;
    b.work.reset();
  }
}

void GradientReducer::OnGrad(int param, const at::Tensor& grad) {
  if (!armed_ || seen_[param]) return;
  seen_[param] = true;
  Bucket& b = buckets_[bucket_of_[param]];
  auto slice = b.flat.narrow(0, b.offsets[slot_of_[param]], params_[param].numel());
  torch::NoGradGuard ng;
  // Earlier micro-batches accumulated into .grad; this hook sees the last one's contribution.
  const auto& prev = params_[param].grad();
  if (prev.defined())
    slice.copy_((prev + grad).reshape({-1}));
  else
    slice.copy_(grad.reshape({-1}));
  --b.pending;
  LaunchReady();
}

void GradientReducer::LaunchReady() {
  while (next_launch_ < buckets_.size() && buckets_[next_launch_].pending == 0) {
    Bucket& b = buckets_[next_launch_];
    b.work = comm_->AllReduceAsync(b.flat, ReduceOp::kAvg, "grad bucket " + std::to_string(next_launch_));
    b.launched = true;
    launch_order_.push_back(static_cast<int>(next_launch_));
    ++next_launch_;
  }
}

double GradientReducer::Finish() {
  torch::NoGradGuard ng;
  // Parameters that got no gradient this step contribute what they hold (every rank runs the same
  // graph, so this is the same on all of them).
  for (size_t i = 0; i < params_.size(); ++i) {
    if (seen_[i]) continue;
    Bucket& b = buckets_[bucket_of_[i]];
    auto slice = b.flat.narrow(0, b.offsets[slot_of_[i]], params_[i].numel());
    const auto& g = params_[i].grad();
    if (g.defined()) slice.copy_(g.reshape({-1})); else slice.zero_();
    seen_[i] = true;
    --b.pending;
  }
  LaunchReady();
  armed_ = false;
  const auto t0 = std::chrono::steady_clock::now();
  for (auto& b : buckets_) b.work->Wait();
  const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  for (auto& b : buckets_) {
    for (size_t s = 0; s < b.params.size(); ++s) {
      auto& p = params_[b.params[s]];
      auto avg = b.flat.narrow(0, b.offsets[s], p.numel()).view_as(p);
      if (p.grad().defined()) p.mutable_grad().copy_(avg); else p.mutable_grad() = avg.clone();
    }
  }
  return waited;
}

}  // namespace evl
