// Building blocks shared by the backbone and the decoder (official vision_transformer.py).
#include "evl/model.h"
#include "linear.h"

#include <torch/torch.h>
#include <torch/version.h>

#include <cmath>

namespace evl {

namespace F = torch::nn::functional;

torch::Tensor QuickGELUImpl::forward(const torch::Tensor& x) { return x * torch::sigmoid(1.702 * x); }

LayerNormImpl::LayerNormImpl(int64_t dim) : dim_(dim) { reset(); }

void LayerNormImpl::reset() {
  weight = register_parameter("weight", torch::ones({dim_}));
  bias = register_parameter("bias", torch::zeros({dim_}));
}

torch::Tensor LayerNormImpl::forward(const torch::Tensor& x) {
  // fp32 statistics whatever the activation dtype: fp16/bf16 variance underflows otherwise.
  if (x.scalar_type() == torch::kFloat) return torch::layer_norm(x, {dim_}, weight, bias, 1e-5);
  return torch::layer_norm(x.to(torch::kFloat), {dim_}, weight.to(torch::kFloat),
                           bias.to(torch::kFloat), 1e-5)
      .to(x.scalar_type());
}

AttentionImpl::AttentionImpl(int64_t in_dim, int64_t qkv_dim, int64_t num_heads)
    : in_dim_(in_dim), qkv_dim_(qkv_dim), num_heads_(num_heads) {
  TORCH_CHECK(qkv_dim % num_heads == 0, "qkv_dim ", qkv_dim, " must divide by num_heads ", num_heads);
  reset();
}

void AttentionImpl::reset() {
  q_proj = register_module("q_proj", torch::nn::Linear(in_dim_, qkv_dim_));
  k_proj = register_module("k_proj", torch::nn::Linear(in_dim_, qkv_dim_));
  v_proj = register_module("v_proj", torch::nn::Linear(in_dim_, qkv_dim_));
  out_proj = register_module("out_proj", torch::nn::Linear(qkv_dim_, in_dim_));
  torch::NoGradGuard no_grad;
  for (auto* m : {&q_proj, &k_proj, &v_proj, &out_proj}) {
    torch::nn::init::xavier_uniform_((*m)->weight);
    torch::nn::init::zeros_((*m)->bias);
  }
}

namespace {

// Scaled dot-product attention over [N, H, L, D] tensors, through LibTorch's fused operator: on a
// GPU (LibTorch >= 2.0) it picks the flash / memory-efficient / cuDNN kernels, which never write the
// [L, L] affinity matrix to memory; on 1.13 it is the math path, equal to the unfused one in FP32.
torch::Tensor Attend(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v) {
#if TORCH_VERSION_MAJOR >= 2
  return at::scaled_dot_product_attention(q, k, v);
#else
  // 1.13's operator is the unfused math on every device (bit-identical to the matmul-softmax-matmul
  // it replaced, FP32 and BF16, checked with Debian's python3-torch); kept for one code path.
  return std::get<0>(at::_scaled_dot_product_attention(q, k, v));
#endif
}

}  // namespace

const AttentionImpl::Fused& AttentionImpl::FusedProjection(Fused* cache,
                                                          std::initializer_list<const torch::nn::Linear*> parts) {
  std::vector<std::pair<const void*, int64_t>> source;
  std::vector<torch::Tensor> w, b;
  bool needs_grad = false;
  for (const auto* part : parts) {
    w.push_back((*part)->weight);
    b.push_back((*part)->bias);
    for (const auto* t : {&(*part)->weight, &(*part)->bias}) {
      source.emplace_back(t->data_ptr(), t->_version());
      needs_grad = needs_grad || t->requires_grad();
    }
  }
  // Training the decoder, the concatenation must stay in the graph so that each part gets its
  // gradient: it is rebuilt per call (cheap beside the GEMM it feeds), and nothing is kept.
  const bool in_graph = needs_grad && torch::GradMode::is_enabled();
  if (!in_graph && source == cache->source) return *cache;
  c10::optional<torch::NoGradGuard> no_grad;
  if (!in_graph) no_grad.emplace();
  cache->weight = torch::cat(w, 0);
  cache->bias = torch::cat(b, 0);
  cache->source = in_graph ? decltype(source){} : std::move(source);
  return *cache;
}

torch::Tensor AttentionImpl::forward(const torch::Tensor& q_in, const torch::Tensor& kv) {
  const int64_t N = q_in.size(0), Lq = q_in.size(1), Lk = kv.size(1), H = num_heads_;
  const int64_t D = qkv_dim_ / H;
  auto q = Linear(q_in, q_proj->weight, q_proj->bias).view({N, Lq, H, D}).transpose(1, 2);
  // k and v read the same memory: one GEMM instead of two.
  const auto& fused = FusedProjection(&kv_, {&k_proj, &v_proj});
  auto kvp = Linear(kv, fused.weight, fused.bias).view({N, Lk, 2, H, D});
  auto k = kvp.select(2, 0).transpose(1, 2);
  auto v = kvp.select(2, 1).transpose(1, 2);
  auto mix = Attend(q, k, v).transpose(1, 2).reshape({N, Lq, H * D});
  return Linear(mix, out_proj->weight, out_proj->bias);
}

torch::Tensor AttentionImpl::forward_self(const torch::Tensor& x, torch::Tensor* q_out,
                                          torch::Tensor* k_out) {
  const int64_t N = x.size(0), L = x.size(1), H = num_heads_, D = qkv_dim_ / H;
  const auto& fused = FusedProjection(&qkv_, {&q_proj, &k_proj, &v_proj});
  auto qkv = Linear(x, fused.weight, fused.bias).view({N, L, 3, H, D});
  auto q = qkv.select(2, 0), k = qkv.select(2, 1), v = qkv.select(2, 2);
  if (q_out) *q_out = q;
  if (k_out) *k_out = k;
  auto mix = Attend(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2));
  return Linear(mix.transpose(1, 2).reshape({N, L, H * D}), out_proj->weight, out_proj->bias);
}

torch::nn::Sequential MakeMlp(int64_t dim, double mlp_factor, double dropout) {
  const int64_t hidden = std::llround(mlp_factor * dim);
  torch::nn::Sequential mlp({{"fc1", torch::nn::Linear(dim, hidden)},
                             {"act", QuickGELU()},
                             {"dropout", torch::nn::Dropout(dropout)},
                             {"fc2", torch::nn::Linear(hidden, dim)}});
  torch::NoGradGuard no_grad;
  for (const char* name : {"fc1", "fc2"}) {
    auto* lin = mlp->named_children()[name]->as<torch::nn::Linear>();
    torch::nn::init::xavier_uniform_(lin->weight);
    torch::nn::init::normal_(lin->bias, 0.0, 1e-6);
  }
  return mlp;
}

namespace {

// The MLP's Sequential exists for its parameter names (mlp.fc1, mlp.fc2); running it by hand lets
// the two Linears take the fast path.
torch::Tensor RunMlp(torch::nn::Sequential& mlp, const torch::Tensor& x) {
  auto* l1 = mlp[0]->as<torch::nn::Linear>();
  auto* l2 = mlp[3]->as<torch::nn::Linear>();
  auto h = Linear(x, l1->weight, l1->bias);
  h = h * torch::sigmoid(1.702 * h);
  h = mlp[2]->as<torch::nn::Dropout>()->forward(h);
  return Linear(h, l2->weight, l2->bias);
}

}  // namespace

TransformerEncoderLayerImpl::TransformerEncoderLayerImpl(int64_t dim, int64_t heads, double mlp_factor)
    : dim_(dim), heads_(heads), mlp_factor_(mlp_factor) {
  reset();
}

void TransformerEncoderLayerImpl::reset() {
  attn = register_module("attn", Attention(dim_, dim_, heads_));
  mlp = register_module("mlp", MakeMlp(dim_, mlp_factor_, 0.0));
  norm1 = register_module("norm1", LayerNorm(dim_));
  norm2 = register_module("norm2", LayerNorm(dim_));
}

torch::Tensor TransformerEncoderLayerImpl::forward(const torch::Tensor& x, torch::Tensor* q_out,
                                                   torch::Tensor* k_out) {
  auto h = x + attn->forward_self(norm1(x), q_out, k_out);
  return h + RunMlp(mlp, norm2(h));
}

TransformerDecoderLayerImpl::TransformerDecoderLayerImpl(int64_t dim, int64_t qkv_dim, int64_t heads,
                                                         double mlp_factor, double mlp_dropout)
    : dim_(dim), qkv_dim_(qkv_dim), heads_(heads), mlp_factor_(mlp_factor), mlp_dropout_(mlp_dropout) {
  reset();
}

void TransformerDecoderLayerImpl::reset() {
  attn = register_module("attn", Attention(dim_, qkv_dim_, heads_));
  mlp = register_module("mlp", MakeMlp(dim_, mlp_factor_, mlp_dropout_));
  norm1 = register_module("norm1", LayerNorm(dim_));
  norm2 = register_module("norm2", LayerNorm(dim_));
  norm3 = register_module("norm3", LayerNorm(dim_));
}

torch::Tensor TransformerDecoderLayerImpl::forward(const torch::Tensor& x, const torch::Tensor& y) {
  auto h = x + attn->forward(norm1(x), norm3(y));
  return h + RunMlp(mlp, norm2(h));
}

PatchEmbed2DImpl::PatchEmbed2DImpl(int64_t patch_size, int64_t embed_dim)
    : patch_size_(patch_size), embed_dim_(embed_dim) {
  reset();
}

void PatchEmbed2DImpl::reset() {
  proj = register_module("proj", torch::nn::Linear(3 * patch_size_ * patch_size_, embed_dim_));
}

torch::Tensor PatchEmbed2DImpl::forward(const torch::Tensor& x) {
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3), p = patch_size_;
  TORCH_CHECK(C == 3 && H % p == 0 && W % p == 0, "PatchEmbed2D: input [", N, ", ", C, ", ", H, ", ",
              W, "] is not 3-channel with sides divisible by ", p);
  auto patches = x.view({N, C, H / p, p, W / p, p}).permute({0, 2, 4, 1, 3, 5}).reshape(
      {N, (H / p) * (W / p), C * p * p});
  return Linear(patches, proj->weight, proj->bias);
}

VisionTransformer2DImpl::VisionTransformer2DImpl(const BackboneOptions& options) : options_(options) {
  reset();
}

void VisionTransformer2DImpl::reset() {
  const auto& o = options_;
  TORCH_CHECK(o.width % o.heads == 0, "backbone width ", o.width, " must divide by heads ", o.heads);
  TORCH_CHECK(o.input_size % o.patch_size == 0, "backbone input_size must divide by patch_size");
  patch_embed = register_module("patch_embed", PatchEmbed2D(o.patch_size, o.width));
  const int64_t tokens = o.grid() * o.grid() + 1;
  cls_token = register_parameter("cls_token", torch::randn({o.width}) * 0.02);
  pos_embed = register_parameter("pos_embed", torch::randn({tokens, o.width}) * 0.02);
  blocks = register_module("blocks", torch::nn::ModuleList());
  for (int64_t i = 0; i < o.layers; ++i) blocks->push_back(TransformerEncoderLayer(o.width, o.heads, o.mlp_factor));
  ln_pre = register_module("ln_pre", LayerNorm(o.width));
}

void VisionTransformer2DImpl::apply_dtype() {
  torch::NoGradGuard no_grad;
  const auto dt = options_.dtype;
  for (auto& m : modules()) {
    if (auto* lin = m->as<torch::nn::Linear>()) {
      lin->weight.set_data(lin->weight.to(dt));
      lin->bias.set_data(lin->bias.to(dt));
    }
  }
  cls_token.set_data(cls_token.to(dt));
  pos_embed.set_data(pos_embed.to(dt));
}

std::vector<BlockFeatures> VisionTransformer2DImpl::forward(const torch::Tensor& input, int64_t last_n) {
  TORCH_CHECK(last_n >= 0 && last_n <= options_.layers, "requested features of ", last_n,
              " blocks from a ", options_.layers, "-block backbone");
  auto x = patch_embed(input.to(options_.dtype));
  x = torch::cat({cls_token.view({1, 1, -1}).expand({x.size(0), 1, -1}), x}, 1) + pos_embed;
  x = ln_pre(x);
  std::vector<BlockFeatures> feats;
  const int64_t first_kept = options_.layers - last_n;
  for (int64_t i = 0; i < options_.layers; ++i) {
    auto& blk = blocks->at<TransformerEncoderLayerImpl>(i);
    if (i < first_kept) {
      x = blk.forward(x);
    } else {
      BlockFeatures f;
      x = blk.forward(x, &f.q, &f.k);
      f.out = x;
      feats.push_back(std::move(f));
    }
  }
  return feats;
}

}  // namespace evl
