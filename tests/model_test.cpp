// The C++ model against evl_reference.py (which follows the official code) on random weights,
// weight import, and the frozen-backbone contract.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <fstream>
#include <map>
#include <set>
#include <sys/stat.h>

#include "test_paths.h"
#include "evl/model.h"
#include "evl/npy.h"
#include "evl/weights.h"

namespace evl {
namespace {

const std::string kFixtures = EVL_FIXTURE_DIR;

std::map<std::string, int64_t> ReadOptions(const std::string& dir) {
  std::ifstream in(dir + "/options.txt");
  std::map<std::string, int64_t> m;
  std::string k;
  int64_t v;
  while (in >> k >> v) m[k] = v;
  return m;
}

EVLOptions OptionsFor(const std::string& dir) {
  auto m = ReadOptions(dir);
  EXPECT_FALSE(m.empty()) << "no fixture at " << dir;
  EVLOptions o;
  o.backbone.width = m["width"];
  o.backbone.layers = m["layers"];
  o.backbone.heads = m["heads"];
  o.backbone.patch_size = m["patch"];
  o.backbone.input_size = m["size"];
  o.decoder.num_layers = m["dec_layers"];
  o.decoder.qkv_dim = m["qkv"];
  o.decoder.num_heads = m["dec_heads"];
  o.decoder.temporal_conv = !m["no_conv"];
  o.decoder.temporal_pos_embed = !m["no_pos"];
  o.decoder.temporal_cross_attention = !m["no_xattn"];
  o.decoder.mlp_dropout = 0.5;  // eval mode must switch it off
  o.num_frames = m["frames"];
  o.num_classes = m["classes"];
  o.cls_dropout = 0.5;
  return o;
}

EVLTransformer LoadFixtureModel(const std::string& dir) {
  EVLTransformer model(OptionsFor(dir));
  LoadClipVisual(*model->backbone(), dir + "/clip.pt");
  LoadEvlWeights(*model, dir + "/evl.pth");
  model->eval();
  return model;
}

class Parity : public ::testing::TestWithParam<std::string> {};

TEST_P(Parity, LogitsMatchReferenceAtFp32) {
  const std::string dir = kFixtures + "/" + GetParam();
  auto model = LoadFixtureModel(dir);
  auto x = ReadNpy(dir + "/input.npy");
  auto expected = ReadNpy(dir + "/logits.npy");
  torch::Tensor logits;
  {
    torch::NoGradGuard no_grad;
    logits = model->forward(x);
  }
  ASSERT_EQ(logits.sizes(), expected.sizes());
  const double rel = ((logits - expected).abs().max() / expected.abs().max()).item<double>();
  EXPECT_LE(rel, 1e-5) << "logits\n" << logits << "\nexpected\n" << expected;
}

TEST_P(Parity, ParameterNamesAreTheOfficialKeys) {
  const std::string dir = kFixtures + "/" + GetParam();
  EVLTransformer model(OptionsFor(dir));
  std::set<std::string> ours, theirs;
  for (const auto& p : model->named_parameters()) ours.insert(p.key());
  std::ifstream in(dir + "/keys.txt");
  for (std::string k; std::getline(in, k);)
    if (!k.empty()) theirs.insert(k.rfind("module.", 0) == 0 ? k.substr(7) : k);
  EXPECT_EQ(ours, theirs);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, Parity, ::testing::Values("parity_a", "parity_b", "parity_c"));

// The test above compares with keys from the in-repo transcription of model.py. This one compares
// with the official model.py itself: the names and shapes its EVLTransformer registers for the
// ViT-B/16 8-frame recipe (tests/fixtures/official_keys_vitb16_8f.txt, generated from the official
// repository), which is what the released checkpoints' keys are.
TEST(Parity, ParameterNamesAndShapesAreTheOfficialModelsForViTB16) {
  EVLTransformer model{EVLOptions{}};  // the defaults are the ViT-B/16 8-frame recipe
  std::map<std::string, std::string> ours, theirs;
  for (const auto& p : model->named_parameters()) {
    std::string shape;
    for (int64_t d : p.value().sizes()) shape += (shape.empty() ? "" : "x") + std::to_string(d);
    ours[p.key()] = shape;
  }
  std::ifstream in(std::string(EVL_SOURCE_DIR) + "/tests/fixtures/official_keys_vitb16_8f.txt");
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || line[0] == '#') continue;
    const size_t space = line.find(' ');
    theirs[line.substr(0, space)] = line.substr(space + 1);
  }
  ASSERT_EQ(theirs.size(), 97u);
  EXPECT_EQ(ours, theirs);
}

TEST(Weights, DetectsFormatsFromContent) {
  EXPECT_EQ(DetectWeightsFormat(kFixtures + "/parity_a/evl.pth"), WeightsFormat::kTorchSave);
  EXPECT_EQ(DetectWeightsFormat(kFixtures + "/parity_a/clip.pt"), WeightsFormat::kTorchScript);
  EXPECT_EQ(DetectWeightsFormat(kFixtures + "/bad/not_zip.pth"), WeightsFormat::kUnknown);
}

TEST(Weights, ModulePrefixIsStripped) {
  auto sd = ReadTorchSaveStateDict(kFixtures + "/parity_a/evl.pth");  // written with 'module.'
  ASSERT_FALSE(sd.empty());
  for (const auto& [k, v] : sd) EXPECT_NE(k.rfind("decoder.", 0) == 0 || k.rfind("proj.", 0) == 0, false) << k;
}

void ExpectWeightsError(const std::string& path, std::initializer_list<const char*> parts) {
  try {
    ReadTorchSaveStateDict(path);
    FAIL() << path << " was accepted";
  } catch (const WeightsError& e) {
    for (const char* p : parts)
      EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what() << " lacks " << p;
  }
}

TEST(Weights, RefusesForbiddenGlobalsWithoutRunningThem) {
  const std::string bad = kFixtures + "/bad";
  ExpectWeightsError(bad + "/evil_global.pth", {"evil_global.pth", "forbidden global 'os.system'"});
  ExpectWeightsError(bad + "/evil_stack_global.pth", {"forbidden global 'builtins.eval'"});
  struct stat st;
  EXPECT_NE(stat((bad + "/PWNED").c_str(), &st), 0) << "a payload ran";
}

TEST(Weights, RejectsTruncatedNonZipAndLegacyFiles) {
  const std::string bad = kFixtures + "/bad";
  ExpectWeightsError(bad + "/truncated.pth", {"truncated.pth"});
  ExpectWeightsError(bad + "/not_zip.pth", {"not_zip.pth", "zip"});
  ExpectWeightsError(bad + "/legacy.pth", {"legacy.pth"});
  ExpectWeightsError(bad + "/does_not_exist.pth", {"does_not_exist.pth"});
}

TEST(Weights, ShapeMismatchNamesTheTensor) {
  auto o = OptionsFor(kFixtures + "/parity_a");
  o.num_classes += 1;
  EVLTransformer model(o);
  try {
    LoadEvlWeights(*model, kFixtures + "/parity_a/evl.pth");
    FAIL();
  } catch (const WeightsError& e) {
    EXPECT_NE(std::string(e.what()).find("'proj.2.weight'"), std::string::npos) << e.what();
  }
  auto wrong_depth = OptionsFor(kFixtures + "/parity_a");
  wrong_depth.backbone.layers += 1;
  EVLTransformer m2(wrong_depth);
  EXPECT_THROW(LoadClipVisual(*m2->backbone(), kFixtures + "/parity_a/clip.pt"), WeightsError);
}

TEST(Weights, StrictLoadReportsMissingAndUnexpectedKeys) {
  auto o = OptionsFor(kFixtures + "/parity_b");  // has no temporal_conv
  o.decoder.temporal_conv = true;
  EVLTransformer model(o);
  try {
    LoadEvlWeights(*model, kFixtures + "/parity_b/evl.pth");
    FAIL();
  } catch (const WeightsError& e) {
    EXPECT_NE(std::string(e.what()).find("missing keys"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("decoder.temporal_conv.0.weight"), std::string::npos) << e.what();
  }
  auto report = LoadEvlWeights(*model, kFixtures + "/parity_b/evl.pth", /*strict=*/false);
  EXPECT_FALSE(report.missing.empty());
  EXPECT_TRUE(report.unexpected.empty());
}

TEST(Frozen, OnlyDecoderAndHeadReceiveGradients) {
  auto model = LoadFixtureModel(kFixtures + "/parity_a");
  model->train();
  auto x = ReadNpy(kFixtures + "/parity_a/input.npy");
  auto loss = model->forward(x).logsumexp(1).mean();
  loss.backward();
  int64_t trainable = 0;
  for (const auto& p : model->named_parameters()) {
    EXPECT_TRUE(p.key().rfind("decoder.", 0) == 0 || p.key().rfind("proj.", 0) == 0) << p.key();
    EXPECT_TRUE(p.value().grad().defined()) << p.key() << " got no gradient";
    trainable += p.value().numel();
  }
  for (const auto& p : model->backbone()->named_parameters()) {
    EXPECT_FALSE(p.value().requires_grad()) << p.key();
    EXPECT_FALSE(p.value().grad().defined()) << p.key();
  }
  EXPECT_EQ(Summarize(model).trainable_params, trainable);
  EXPECT_GT(Summarize(model).frozen_params, 0);
}

TEST(Npy, RoundTrip) {
  auto t = torch::randn({2, 3, 4});
  WriteNpy("npy_roundtrip.npy", t);
  EXPECT_TRUE(torch::equal(ReadNpy("npy_roundtrip.npy"), t));
}

}  // namespace
}  // namespace evl

#include "../model/src/linear.h"

namespace evl {
namespace {

TEST(FastLinear, ValuesAndGradientsMatchAtLinear) {
  torch::manual_seed(3);
  auto x = torch::randn({2, 5, 24}, torch::requires_grad());
  auto w = torch::randn({16, 24}, torch::requires_grad());
  auto b = torch::randn({16}, torch::requires_grad());
  auto g = torch::randn({2, 5, 16});
  auto y = Linear(x, w, b);
  auto grads = torch::autograd::grad({y}, {x, w, b}, {g});
  auto y_ref = torch::linear(x, w, b);
  auto grads_ref = torch::autograd::grad({y_ref}, {x, w, b}, {g});
  EXPECT_TRUE(torch::allclose(y, y_ref, 1e-5, 1e-5));
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(torch::allclose(grads[i], grads_ref[i], 1e-5, 1e-5)) << i;
}

}  // namespace
}  // namespace evl
