// The frozen backbone in its low precision (FP16 on a GPU, BF16 on a CPU) against the same weights
// in FP32: every block's output and the end-to-end logits, within the rounding of the low type.
// The same binary is the GPU check's precision step (bench/gpu_check.sh runs it with --device
// cuda); CTest runs it on the CPU in BF16.
//   precision_test [--device cpu|cuda] [gtest flags]
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstring>
#include <string>

#include "evl/autocast.h"
#include "evl/model.h"

namespace evl::test {
namespace {

std::string g_device = "cpu";

torch::Device Device() { return torch::Device(g_device); }
bool OnCuda() { return Device().is_cuda(); }
torch::ScalarType LowType() { return OnCuda() ? torch::kHalf : torch::kBFloat16; }
// Relative rounding of the low type (FP16: 2^-11, BF16: 2^-8), times the depth a block adds.
double PerBlockBound() { return OnCuda() ? 4e-3 : 3e-2; }

// A backbone shaped like CLIP's (head dim 64, MLP x4) but small enough for a CPU test.
EVLOptions SmallClipLike() {
  EVLOptions o;
  o.backbone.width = 128;
  o.backbone.layers = 4;
  o.backbone.heads = 2;
  o.backbone.patch_size = 16;
  o.backbone.input_size = 64;
  o.decoder.num_layers = 2;
  o.decoder.qkv_dim = 128;
  o.decoder.num_heads = 2;
  o.num_frames = 4;
  o.num_classes = 10;
  o.cls_dropout = 0;
  o.decoder.mlp_dropout = 0;
  return o;
}

// Two models with the same weights, the second's backbone in `low`.
std::pair<EVLTransformer, EVLTransformer> TwinModels(torch::ScalarType low) {
  torch::manual_seed(0);
  EVLOptions o = SmallClipLike();
  EVLTransformer ref(o);
  o.backbone.dtype = low;
  EVLTransformer test(o);
  torch::NoGradGuard no_grad;
  auto copy = [](torch::nn::Module& from, torch::nn::Module& to) {
    auto src = from.named_parameters();
    for (auto& p : to.named_parameters()) p.value().copy_(src[p.key()]);
  };
  copy(*ref->backbone(), *test->backbone());
  copy(*ref, *test);
  ref->to(Device());
  test->to(Device());
  ref->eval();
  test->eval();
  return {ref, test};
}

double RelativeError(const torch::Tensor& got, const torch::Tensor& want) {
  auto g = got.to(torch::kFloat).cpu(), w = want.to(torch::kFloat).cpu();
  return ((g - w).norm() / w.norm().clamp_min(1e-12)).item<double>();
}

TEST(Precision, EveryBackboneBlockInLowPrecisionMatchesFp32) {
  auto [ref, test] = TwinModels(LowType());
  torch::NoGradGuard no_grad;
  const auto o = SmallClipLike();
  auto x = torch::randn({3, 3, o.backbone.input_size, o.backbone.input_size}).to(Device());
  // Each block is fed the FP32 model's input to it, so an error is the block's own, not inherited.
  auto h = ref->backbone()->forward(x, o.backbone.layers);
  ASSERT_EQ(static_cast<int64_t>(h.size()), o.backbone.layers);
  auto& blocks_ref = *ref->backbone()->blocks;
  auto& blocks_low = *test->backbone()->blocks;
  for (int64_t i = 1; i < o.backbone.layers; ++i) {
    auto in = h[i - 1].out;
    auto want = blocks_ref.at<TransformerEncoderLayerImpl>(i).forward(in);
    auto got = blocks_low.at<TransformerEncoderLayerImpl>(i).forward(in.to(LowType()));
    EXPECT_EQ(got.scalar_type(), LowType()) << "block " << i << " left its precision";
    EXPECT_LT(RelativeError(got, want), PerBlockBound()) << "block " << i;
  }
}

TEST(Precision, LogitsWithALowPrecisionBackboneMatchFp32) {
  auto [ref, test] = TwinModels(LowType());
  torch::NoGradGuard no_grad;
  const auto o = SmallClipLike();
  auto clip = torch::randn({2, 3, o.num_frames, o.backbone.input_size, o.backbone.input_size}).to(Device());
  auto want = ref->forward(clip);
  torch::Tensor got;
  {
    // As `evl train` runs the decoder on a GPU: under FP16 autocast.
    AutocastScope scope(OnCuda(), OnCuda() ? AutocastDtype::kHalf : AutocastDtype::kOff);
    got = test->forward(clip);
  }
  EXPECT_EQ(got.scalar_type(), torch::kFloat);
  EXPECT_LT(RelativeError(got, want), OnCuda() ? 1e-2 : 5e-2);
  // The same decision on nearly every clip: the error is rounding, not a wrong computation.
  EXPECT_TRUE(got.argmax(1).equal(want.argmax(1)) || RelativeError(got, want) < 1e-2);
}

// Under autocast the backbone runs natively (autocast paused: its weights are already in its
// precision) and hands the decoder its features in that precision, without an FP32 copy of each;
// the decoder's logits are the same, bit for bit, as from FP32 copies of the same features.
TEST(Precision, UnderAutocastTheDecoderReadsTheBackbonesOwnPrecisionWithTheSameResult) {
  auto [ref, test] = TwinModels(LowType());
  torch::NoGradGuard no_grad;
  const auto o = SmallClipLike();
  auto clip = torch::randn({2, 3, o.num_frames, o.backbone.input_size, o.backbone.input_size}).to(Device());
  const auto plain = test->backbone_features(clip);  // no autocast: FP32 features for FP32 decoding
  ASSERT_EQ(plain.front().out.scalar_type(), torch::kFloat);
  AutocastScope scope(OnCuda(), OnCuda() ? AutocastDtype::kHalf : AutocastDtype::kBFloat16);
  const auto kept = test->backbone_features(clip);
  ASSERT_EQ(kept.size(), plain.size());
  for (size_t i = 0; i < kept.size(); ++i) {
    EXPECT_EQ(kept[i].out.scalar_type(), LowType()) << "block " << i << ": an FP32 copy was made under autocast";
    // The backbone itself computed the same with and without an autocast scope around it.
    EXPECT_TRUE(torch::equal(kept[i].out.to(torch::kFloat), plain[i].out)) << "block " << i;
    EXPECT_TRUE(torch::equal(kept[i].q.to(torch::kFloat), plain[i].q)) << "block " << i;
  }
  auto copies = kept;
  for (auto& f : copies) {
    f.out = f.out.to(torch::kFloat);
    f.q = f.q.to(torch::kFloat);
    f.k = f.k.to(torch::kFloat);
  }
  EXPECT_TRUE(torch::equal(test->decode(kept), test->decode(copies)));
}

}  // namespace
}  // namespace evl::test

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  for (int i = 1; i < argc; ++i)
    if (std::strcmp(argv[i], "--device") == 0 && i + 1 < argc) evl::test::g_device = argv[++i];
  if (evl::test::g_device != "cpu" && evl::test::g_device != "cuda") {
    std::fprintf(stderr, "--device must be cpu or cuda\n");
    return 2;
  }
  if (evl::test::g_device == "cuda" && !torch::cuda::is_available()) {
    std::fprintf(stderr, "--device cuda: this LibTorch sees no CUDA device\n");
    return 2;
  }
  return RUN_ALL_TESTS();
}
