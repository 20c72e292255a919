#include "linear.h"

#include "evl/autocast.h"

#include <torch/torch.h>

#include <cstdlib>

namespace evl {
namespace {

bool MkldnnEnabled() {
  static const bool enabled = [] {
    const char* off = std::getenv("EVL_DISABLE_MKLDNN_LINEAR");
    return at::hasMKLDNN() && !(off && std::string(off) == "1");
  }();
  return enabled;
}

// a [M, K] @ b[N, K]^T (+ bias) through oneDNN, dense in and out.
torch::Tensor MatmulNT(const torch::Tensor& a, const torch::Tensor& b, const c10::optional<torch::Tensor>& bias) {
  return at::mkldnn_linear(a.contiguous().to_mkldnn(), b.contiguous(), bias).to_dense();
}

class MkldnnLinear : public torch::autograd::Function<MkldnnLinear> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x,
                               const torch::Tensor& w, const torch::Tensor& b) {
    auto x2 = x.reshape({-1, x.size(-1)});
    ctx->save_for_backward({x2, w});
    auto sizes = x.sizes().vec();
    sizes.back() = w.size(0);
    return MatmulNT(x2, w, b.defined() ? c10::optional<torch::Tensor>(b) : c10::nullopt).view(sizes);
  }

  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx,
                                               torch::autograd::tensor_list grads) {
    auto saved = ctx->get_saved_variables();
    const auto& x2 = saved[0];
    const auto& w = saved[1];
    auto g = grads[0].reshape({-1, w.size(0)});
    torch::Tensor gx, gw, gb;
    if (ctx->needs_input_grad(0)) {
      auto sizes = grads[0].sizes().vec();
      sizes.back() = w.size(1);
      gx = MatmulNT(g, w.t(), c10::nullopt).view(sizes);
    }
    if (ctx->needs_input_grad(1)) gw = MatmulNT(g.t(), x2.t(), c10::nullopt);
    if (ctx->needs_input_grad(2)) gb = g.sum(0);
    return {gx, gw, gb};
  }
};

}  // namespace

at::Tensor Linear(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias) {
  // Under CPU autocast torch::linear picks the autocast dtype; the oneDNN path is FP32 only.
  if (MkldnnEnabled() && !CpuAutocastEnabled() && x.device().is_cpu() && x.scalar_type() == at::kFloat &&
      weight.scalar_type() == at::kFloat && x.numel() > 0) {
    if (!torch::GradMode::is_enabled() || (!x.requires_grad() && !weight.requires_grad() &&
                                           !(bias.defined() && bias.requires_grad()))) {
      auto x2 = x.reshape({-1, x.size(-1)});
      auto sizes = x.sizes().vec();
      sizes.back() = weight.size(0);
      return MatmulNT(x2, weight, bias.defined() ? c10::optional<at::Tensor>(bias) : c10::nullopt).view(sizes);
    }
    return MkldnnLinear::apply(x, weight, bias);
  }
  return torch::linear(x, weight, bias);
}

}  // namespace evl
