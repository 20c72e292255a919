// The EVL decoder, temporal modules and the full model (official model.py).
#include "evl/model.h"
#include "evl/autocast.h"

#include <torch/torch.h>

#include <cmath>

namespace evl {

TemporalCrossAttentionImpl::TemporalCrossAttentionImpl(int64_t grid_h, int64_t grid_w, int64_t feature_dim)
    : grid_h_(grid_h), grid_w_(grid_w), feature_dim_(feature_dim) {
  reset();
}

void TemporalCrossAttentionImpl::reset() {
  const int64_t bins = (2 * grid_h_ - 1) * (2 * grid_w_ - 1);
  w1 = register_parameter("w1", torch::zeros({bins, feature_dim_}));
  w2 = register_parameter("w2", torch::zeros({bins, feature_dim_}));
  // The relative-offset bin of every (query patch, key patch) pair. Kept out of the state dict
  // (the official idx_tensor is a plain attribute too).
  const int64_t P = grid_h_ * grid_w_;
  rel_index_ = torch::empty({P, P}, torch::kLong);
  auto idx = rel_index_.accessor<int64_t, 2>();
  for (int64_t q = 0; q < P; ++q)
    for (int64_t k = 0; k < P; ++k) {
      const int64_t di = q / grid_w_ - k / grid_w_ + grid_h_ - 1;
      const int64_t dj = q % grid_w_ - k % grid_w_ + grid_w_ - 1;
      idx[q][k] = di * (2 * grid_w_ - 1) + dj;
    }
}

torch::Tensor TemporalCrossAttentionImpl::forward_half(const torch::Tensor& q, const torch::Tensor& k,
                                                       const torch::Tensor& w) {
  // q, k: [N, T', L, H, D] of different frames -> [N, T', P, C] for the patch tokens.
  const int64_t N = q.size(0), T = q.size(1), H = q.size(3), D = q.size(4);
  const int64_t P = grid_h_ * grid_w_, M = N * T, R = w.size(0);
  auto qp = q.narrow(2, 1, P).permute({0, 1, 3, 2, 4}).reshape({M * H, P, D});
  auto kp = k.narrow(2, 1, P).permute({0, 1, 3, 2, 4}).reshape({M * H, P, D});
  auto attn = torch::bmm(qp * (1.0 / std::sqrt(static_cast<double>(D))), kp.transpose(1, 2))
                  .softmax(-1)
                  .view({M, H, P, P})
                  .mean(1);  // [M, P(q), P(k)]
  // The official code gathers w into a [P, P, C] table per call (118 MB at ViT-B/16) and contracts
  // over keys. Scattering the attention into relative-offset bins instead gives the same sum as one
  // dense GEMM against w, with no per-call weight table and a GEMM-shaped gradient for w.
  // Moved once: a plain attribute, not a buffer, so module.to(device) does not move it.
  if (rel_index_.device() != attn.device()) rel_index_ = rel_index_.to(attn.device());
  auto index = rel_index_.unsqueeze(0).expand({M, P, P});
  auto binned = torch::zeros({M, P, R}, attn.options()).scatter_(2, index, attn);
  return torch::matmul(binned.view({M * P, R}), w).view({N, T, P, w.size(1)});
}

torch::Tensor TemporalCrossAttentionImpl::forward(const torch::Tensor& q, const torch::Tensor& k) {
  const int64_t N = q.size(0), T = q.size(1), L = q.size(2);
  TORCH_CHECK(L == grid_h_ * grid_w_ + 1, "TemporalCrossAttention: ", L, " tokens, expected ",
              grid_h_ * grid_w_ + 1);
  auto ret = torch::zeros({N, T, L, feature_dim_}, w1.options());
  if (T < 2) return ret;
  // Frame t attends to frame t-1 with w1 and to frame t+1 with w2; the cls row stays zero.
  auto prev = forward_half(q.narrow(1, 1, T - 1), k.narrow(1, 0, T - 1), w1);
  auto next = forward_half(q.narrow(1, 0, T - 1), k.narrow(1, 1, T - 1), w2);
  namespace F = torch::nn::functional;
  return F::pad(prev, F::PadFuncOptions({0, 0, 1, 0, 1, 0})) +
         F::pad(next, F::PadFuncOptions({0, 0, 1, 0, 0, 1}));
}

EVLDecoderImpl::EVLDecoderImpl(const DecoderOptions& options, int64_t num_frames, int64_t grid, int64_t in_dim)
    : options_(options), num_frames_(num_frames), grid_(grid), in_dim_(in_dim) {
  reset();
}

void EVLDecoderImpl::reset() {
  const auto& o = options_;
  decoder_layers = register_module("decoder_layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < o.num_layers; ++i)
    decoder_layers->push_back(
        TransformerDecoderLayer(in_dim_, o.qkv_dim, o.num_heads, o.mlp_factor, o.mlp_dropout));
  if (o.temporal_conv) {
    temporal_conv = register_module("temporal_conv", torch::nn::ModuleList());
    for (int64_t i = 0; i < o.num_layers; ++i)
      temporal_conv->push_back(torch::nn::Conv1d(
          torch::nn::Conv1dOptions(in_dim_, in_dim_, 3).stride(1).padding(1).groups(in_dim_)));
  }
  if (o.temporal_pos_embed) {
    temporal_pos_embed = register_module("temporal_pos_embed", torch::nn::ParameterList());
    for (int64_t i = 0; i < o.num_layers; ++i)
      // ParameterList keeps the appended tensor's requires_grad flag, which zeros() leaves off.
      temporal_pos_embed->append(torch::zeros({num_frames_, in_dim_}).requires_grad_());
  }
  if (o.temporal_cross_attention) {
    cross_attention = register_module("cross_attention", torch::nn::ModuleList());
    for (int64_t i = 0; i < o.num_layers; ++i)
      cross_attention->push_back(TemporalCrossAttention(grid_, grid_, in_dim_));
  }
  // Zero like the official code, whose _initialize_weights (normal, std 0.02) is never called.
  cls_token = register_parameter("cls_token", torch::zeros({in_dim_}));
}

namespace {

// Depthwise kernel-3 temporal convolution on channel-last features [N, T, L, C], written as three
// shifted multiply-adds: the same sum as Conv1d on [N*L, C, T] without two permute copies.
torch::Tensor TemporalConv(const torch::Tensor& x, const torch::nn::Conv1dImpl& conv) {
  const int64_t T = x.size(1);
  auto w = conv.weight.squeeze(1);  // [C, 3]
  auto y = x * w.select(1, 1) + conv.bias;
  if (T > 1) {
    namespace F = torch::nn::functional;
    auto prev = F::pad(x.narrow(1, 0, T - 1), F::PadFuncOptions({0, 0, 0, 0, 1, 0}));
    auto next = F::pad(x.narrow(1, 1, T - 1), F::PadFuncOptions({0, 0, 0, 0, 0, 1}));
    y = y + prev * w.select(1, 0) + next * w.select(1, 2);
  }
  return y;
}

}  // namespace

torch::Tensor EVLDecoderImpl::forward(const std::vector<BlockFeatures>& features) {
  TORCH_CHECK(static_cast<int64_t>(features.size()) == options_.num_layers, "EVLDecoder: got ",
              features.size(), " feature levels for ", options_.num_layers, " layers");
  const auto& f0 = features[0].out;
  const int64_t N = f0.size(0), T = f0.size(1), C = f0.size(3);
  TORCH_CHECK(!options_.temporal_pos_embed || T == num_frames_, "EVLDecoder: clip has ", T,
              " frames, the temporal position embedding was built for ", num_frames_);
  auto x = cls_token.view({1, 1, C}).expand({N, 1, C});
  for (int64_t i = 0; i < options_.num_layers; ++i) {
    const auto& f = features[i];
    auto frame = f.out;
    if (options_.temporal_conv) frame = frame + TemporalConv(f.out, temporal_conv->at<torch::nn::Conv1dImpl>(i));
    if (options_.temporal_pos_embed) frame = frame + temporal_pos_embed[i].view({1, T, 1, C});
    if (options_.temporal_cross_attention)
      frame = frame + cross_attention->at<TemporalCrossAttentionImpl>(i).forward(f.q, f.k);
    x = decoder_layers->at<TransformerDecoderLayerImpl>(i).forward(x, frame.flatten(1, 2));
  }
  return x;
}

EVLTransformerImpl::EVLTransformerImpl(const EVLOptions& options) : options_(options) { reset(); }

void EVLTransformerImpl::reset() {
  const auto& o = options_;
  backbone_ = VisionTransformer2D(o.backbone);
  backbone_->eval();
  for (auto& p : backbone_->parameters()) p.set_requires_grad(false);
  backbone_->apply_dtype();
  decoder = register_module("decoder", EVLDecoder(o.decoder, o.num_frames, o.backbone.grid(), o.backbone.width));
  proj = register_module("proj", torch::nn::Sequential(torch::nn::LayerNorm(torch::nn::LayerNormOptions({o.backbone.width})),
                                                       torch::nn::Dropout(o.cls_dropout),
                                                       torch::nn::Linear(o.backbone.width, o.num_classes)));
}

void EVLTransformerImpl::to(torch::Device device, torch::Dtype dtype, bool non_blocking) {
  torch::nn::Module::to(device, dtype, non_blocking);
  backbone_->to(device, dtype, non_blocking);
}
void EVLTransformerImpl::to(torch::Dtype dtype, bool non_blocking) {
  torch::nn::Module::to(dtype, non_blocking);
  backbone_->to(dtype, non_blocking);
}
void EVLTransformerImpl::to(torch::Device device, bool non_blocking) {
  torch::nn::Module::to(device, non_blocking);
  backbone_->to(device, non_blocking);
}

std::vector<BlockFeatures> EVLTransformerImpl::backbone_features(const torch::Tensor& x) {
  TORCH_CHECK(x.dim() == 5 && x.size(1) == 3, "EVLTransformer: expected [B, 3, T, H, W], got ", x.sizes());
  const int64_t B = x.size(0), T = x.size(2);
  const int64_t S = options_.backbone.input_size;
  TORCH_CHECK(x.size(3) == S && x.size(4) == S, "EVLTransformer: frames are ", x.size(3), "x", x.size(4),
              ", the backbone takes ", S, "x", S);
  // No autograd at all for the frozen backbone: nothing of it is kept for backward. (Inference mode
  // would be cheaper still, but its tensors cannot be saved by the decoder's autograd graph.)
  torch::NoGradGuard no_grad;
  const bool cuda = x.is_cuda();
  // Under autocast the decoder's matmuls cast their inputs to the autocast type anyway, and its
  // elementwise ops promote to FP32 on their own (their weights are FP32): an FP32 copy of every
  // feature would only be read once and cast back. Without autocast (FP32 decoding) the decoder
  // is given FP32 features, as before.
  const bool keep_precision = AutocastEnabled(cuda);
  auto frames = x.permute({0, 2, 1, 3, 4}).flatten(0, 1);
  std::vector<BlockFeatures> feats;
  {
    AutocastPause native(cuda);  // the backbone's weights are already in the precision it runs in
    feats = backbone_->forward(frames, options_.decoder.num_layers);
  }
  const auto as_decoder_input = [&](const torch::Tensor& t) { return keep_precision ? t : t.to(torch::kFloat); };
  for (auto& f : feats) {
    f.out = as_decoder_input(f.out).view({B, T, f.out.size(1), f.out.size(2)});
    f.q = as_decoder_input(f.q).reshape({B, T, f.q.size(1), f.q.size(2), f.q.size(3)});
    f.k = as_decoder_input(f.k).reshape({B, T, f.k.size(1), f.k.size(2), f.k.size(3)});
  }
  return feats;
}

torch::Tensor EVLTransformerImpl::decode(const std::vector<BlockFeatures>& features) {
  auto x = decoder->forward(features);
  return proj->forward(x.select(1, 0));
}

torch::Tensor EVLTransformerImpl::forward(const torch::Tensor& x) { return decode(backbone_features(x)); }

ModelSummary Summarize(EVLTransformer& model) {
  ModelSummary s;
  for (const auto& p : model->backbone()->parameters()) s.frozen_params += p.numel();
  for (const auto& p : model->parameters()) s.trainable_params += p.numel();
  const auto& o = model->options();
  const double D = o.backbone.width, P = o.backbone.grid() * o.backbone.grid(), L = P + 1;
  const double T = o.num_frames, p = o.backbone.patch_size;
  const double mlp = o.backbone.mlp_factor;
  const double per_block = L * D * D * (4 + 2 * mlp) + 2 * L * L * D;  // multiply-adds
  s.backbone_gflops = 2 * T * (P * 3 * p * p * D + o.backbone.layers * per_block) / 1e9;
  const auto& d = o.decoder;
  const double Q = d.qkv_dim;
  double dec = 0;
  if (d.temporal_conv) dec += T * L * D * 3;
  if (d.temporal_cross_attention) dec += 2 * (T - 1) * (P * P * Q + P * P * D);
  dec += D * Q + 2 * T * L * D * Q + 2 * T * L * Q + Q * D + 2 * D * D * d.mlp_factor;
  s.decoder_gflops = 2 * (d.num_layers * dec + D * o.num_classes) / 1e9;
  return s;
}

}  // namespace evl
