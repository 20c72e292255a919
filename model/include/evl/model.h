// The EVL network: a frozen CLIP ViT (VisionTransformer2D) and the EVL decoder (EVLDecoder) with
// its classification head, as in the official PyTorch code (model.py, vision_transformer.py).
// Module and parameter names mirror the official ones, so `EVLTransformer::named_parameters()` keys
// are exactly the keys of an official checkpoint's 'model' dict (decoder.*, proj.*).
//
// The backbone is owned by EVLTransformer but not registered as a submodule: it never appears in
// parameters(), the optimizer, gradient buckets or trainable checkpoints (the official code hides it
// in a Python list for the same reason). It always runs without autograd.
//
// Thread-compatibility: a module may be used by one thread at a time.
#pragma once

#include <torch/nn/cloneable.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/container/parameterlist.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/nn/pimpl.h>

#include <vector>

namespace evl {

struct BackboneOptions {
  int64_t width = 768;
  int64_t layers = 12;
  int64_t heads = 12;
  int64_t patch_size = 16;
  int64_t input_size = 224;
  double mlp_factor = 4.0;
  // Storage/compute dtype of the frozen backbone's Linear layers, cls token and position embedding
  // (LayerNorm weights stay fp32 and LayerNorm computes in fp32, as the official fp16 mode does).
  c10::ScalarType dtype = c10::ScalarType::Float;
  int64_t grid() const { return input_size / patch_size; }
};

struct DecoderOptions {
  int64_t num_layers = 4;
  int64_t qkv_dim = 768;
  int64_t num_heads = 12;
  double mlp_factor = 4.0;
  double mlp_dropout = 0.5;
  bool temporal_conv = true;
  bool temporal_pos_embed = true;
  bool temporal_cross_attention = true;
};

struct EVLOptions {
  BackboneOptions backbone;
  DecoderOptions decoder;
  int64_t num_frames = 8;
  int64_t num_classes = 400;
  double cls_dropout = 0.5;
};

// x * sigmoid(1.702 x), CLIP's activation.
class QuickGELUImpl : public torch::nn::Cloneable<QuickGELUImpl> {
 public:
  void reset() override {}
  torch::Tensor forward(const torch::Tensor& x);
};
TORCH_MODULE(QuickGELU);

// LayerNorm that computes in fp32 and returns the input dtype (CLIP's fp16-safe LayerNorm).
class LayerNormImpl : public torch::nn::Cloneable<LayerNormImpl> {
 public:
  explicit LayerNormImpl(int64_t dim);
  void reset() override;
  torch::Tensor forward(const torch::Tensor& x);
  torch::Tensor weight, bias;

 private:
  int64_t dim_;
};
TORCH_MODULE(LayerNorm);

// Multi-head attention with separate q/k/v/out projections (the official `Attention`).
class AttentionImpl : public torch::nn::Cloneable<AttentionImpl> {
 public:
  AttentionImpl(int64_t in_dim, int64_t qkv_dim, int64_t num_heads);
  void reset() override;
  // q: [N, Lq, C], kv: [N, Lk, C] -> [N, Lq, C].
  torch::Tensor forward(const torch::Tensor& q, const torch::Tensor& kv);
  // Self-attention that also returns the per-head projected q and k, [N, L, H, D] (unscaled).
  torch::Tensor forward_self(const torch::Tensor& x, torch::Tensor* q_out, torch::Tensor* k_out);

  torch::nn::Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, out_proj{nullptr};

 private:
  // The projections that read the same input, concatenated into one GEMM's weight and bias.
  struct Fused {
    torch::Tensor weight, bias;
    std::vector<std::pair<const void*, int64_t>> source;  // data pointer and version of each part
  };
  // Concatenates `parts` (weights then biases) once and reuses the result while none of them has
  // changed (moved, reloaded, or updated in place: each bumps its data pointer or version), as long
  // as no gradient has to flow back to them: the frozen backbone, and evaluation.
  const Fused& FusedProjection(Fused* cache, std::initializer_list<const torch::nn::Linear*> parts);
  int64_t in_dim_, qkv_dim_, num_heads_;
  Fused qkv_, kv_;
};
TORCH_MODULE(Attention);

torch::nn::Sequential MakeMlp(int64_t dim, double mlp_factor, double dropout);

// Pre-norm CLIP block: x + attn(norm1(x)), then x + mlp(norm2(x)).
class TransformerEncoderLayerImpl : public torch::nn::Cloneable<TransformerEncoderLayerImpl> {
 public:
  TransformerEncoderLayerImpl(int64_t dim, int64_t heads, double mlp_factor);
  void reset() override;
  // When q_out/k_out are non-null they receive this block's attention q and k, [N, L, H, D].
  torch::Tensor forward(const torch::Tensor& x, torch::Tensor* q_out = nullptr,
                        torch::Tensor* k_out = nullptr);

  Attention attn{nullptr};
  torch::nn::Sequential mlp{nullptr};
  LayerNorm norm1{nullptr}, norm2{nullptr};

 private:
  int64_t dim_, heads_;
  double mlp_factor_;
};
TORCH_MODULE(TransformerEncoderLayer);

// The decoder block: the query token attends over all frame tokens (norm1 on the query, norm3 on
// the memory), then an MLP with norm2.
class TransformerDecoderLayerImpl : public torch::nn::Cloneable<TransformerDecoderLayerImpl> {
 public:
  TransformerDecoderLayerImpl(int64_t dim, int64_t qkv_dim, int64_t heads, double mlp_factor,
                              double mlp_dropout);
  void reset() override;
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& y);

  Attention attn{nullptr};
  torch::nn::Sequential mlp{nullptr};
  LayerNorm norm1{nullptr}, norm2{nullptr}, norm3{nullptr};

 private:
  int64_t dim_, qkv_dim_, heads_;
  double mlp_factor_, mlp_dropout_;
};
TORCH_MODULE(TransformerDecoderLayer);

// One backbone block's output as the decoder reads it.
struct BlockFeatures {
  torch::Tensor out;  // [B*T, L, C]
  torch::Tensor q;    // [B*T, L, H, D]
  torch::Tensor k;    // [B*T, L, H, D]
};

// Patch embedding as a Linear over flattened (channel, row, column) patches; equivalent to CLIP's
// stride-p convolution (its weight is conv1.weight.flatten(1), bias zero).
class PatchEmbed2DImpl : public torch::nn::Cloneable<PatchEmbed2DImpl> {
 public:
  PatchEmbed2DImpl(int64_t patch_size, int64_t embed_dim);
  void reset() override;
  // [N, 3, H, W] -> [N, (H/p)*(W/p), embed_dim]
  torch::Tensor forward(const torch::Tensor& x);
  torch::nn::Linear proj{nullptr};

 private:
  int64_t patch_size_, embed_dim_;
};
TORCH_MODULE(PatchEmbed2D);

// CLIP ViT image encoder: patch embedding (a Linear over flattened patches), class token, position
// embedding, ln_pre, pre-norm blocks. No ln_post / proj: EVL reads block outputs.
class VisionTransformer2DImpl : public torch::nn::Cloneable<VisionTransformer2DImpl> {
 public:
  explicit VisionTransformer2DImpl(const BackboneOptions& options);
  void reset() override;
  // x: [N, 3, H, W] -> features of the last `last_n` blocks, oldest first. Blocks before those keep
  // no intermediate tensors.
  std::vector<BlockFeatures> forward(const torch::Tensor& x, int64_t last_n);
  // Casts Linear weights, cls_token and pos_embed to options.dtype (LayerNorms stay fp32).
  void apply_dtype();
  const BackboneOptions& options() const { return options_; }

  PatchEmbed2D patch_embed{nullptr};
  torch::Tensor cls_token, pos_embed;
  torch::nn::ModuleList blocks{nullptr};
  LayerNorm ln_pre{nullptr};

 private:
  BackboneOptions options_;
};
TORCH_MODULE(VisionTransformer2D);

// Attention-map-based temporal cross attention between neighbouring frames (w1: with the previous
// frame, w2: with the next), with relative-position-indexed weights, heads averaged.
class TemporalCrossAttentionImpl : public torch::nn::Cloneable<TemporalCrossAttentionImpl> {
 public:
  TemporalCrossAttentionImpl(int64_t grid_h, int64_t grid_w, int64_t feature_dim);
  void reset() override;
  // q, k: [N, T, L, H, D] (L = 1 + grid_h*grid_w) -> [N, T, L, C]; cls rows are zero.
  torch::Tensor forward(const torch::Tensor& q, const torch::Tensor& k);

  torch::Tensor w1, w2;  // [(2h-1)(2w-1), C]

 private:
  torch::Tensor forward_half(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& w);
  int64_t grid_h_, grid_w_, feature_dim_;
  torch::Tensor rel_index_;  // [P, P] long: relative-offset bin of (query patch, key patch)
};
TORCH_MODULE(TemporalCrossAttention);

class EVLDecoderImpl : public torch::nn::Cloneable<EVLDecoderImpl> {
 public:
  EVLDecoderImpl(const DecoderOptions& options, int64_t num_frames, int64_t grid, int64_t in_dim);
  void reset() override;
  // features: the last num_layers backbone blocks, each viewed as out [B,T,L,C], q/k [B,T,L,H,D]
  // in fp32. Returns the query token, [B, 1, C].
  torch::Tensor forward(const std::vector<BlockFeatures>& features);

  torch::nn::ModuleList decoder_layers{nullptr};
  torch::nn::ModuleList temporal_conv{nullptr};
  torch::nn::ParameterList temporal_pos_embed{nullptr};
  torch::nn::ModuleList cross_attention{nullptr};
  torch::Tensor cls_token;

 private:
  DecoderOptions options_;
  int64_t num_frames_, grid_, in_dim_;
};
TORCH_MODULE(EVLDecoder);

class EVLTransformerImpl : public torch::nn::Cloneable<EVLTransformerImpl> {
 public:
  explicit EVLTransformerImpl(const EVLOptions& options);
  void reset() override;
  // x: [B, 3, T, H, W] normalized clips -> logits [B, num_classes] (fp32).
  torch::Tensor forward(const torch::Tensor& x);
  // The frozen backbone's features for x, computed without autograd (split out so that a
  // training step with batch_split can reuse it and benchmarks can time it).
  std::vector<BlockFeatures> backbone_features(const torch::Tensor& x);
  torch::Tensor decode(const std::vector<BlockFeatures>& features);

  // Not registered: frozen, not trainable, not in parameters() or state dicts.
  VisionTransformer2D& backbone() { return backbone_; }
  const EVLOptions& options() const { return options_; }
  // Module::to moves registered children only; these overrides move the unregistered frozen
  // backbone too, so model->to(...) means the whole network, as module.to does in PyTorch.
  void to(torch::Device device, torch::Dtype dtype, bool non_blocking = false) override;
  void to(torch::Dtype dtype, bool non_blocking = false) override;
  void to(torch::Device device, bool non_blocking = false) override;

  EVLDecoder decoder{nullptr};
  torch::nn::Sequential proj{nullptr};

 private:
  EVLOptions options_;
  VisionTransformer2D backbone_{nullptr};
};
TORCH_MODULE(EVLTransformer);

// Parameter counts and forward FLOPs (multiply-adds x2) for one clip.
struct ModelSummary {
  int64_t frozen_params = 0;
  int64_t trainable_params = 0;
  double backbone_gflops = 0;
  double decoder_gflops = 0;
};
ModelSummary Summarize(EVLTransformer& model);

}  // namespace evl
