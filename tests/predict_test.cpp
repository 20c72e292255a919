// `evl predict` end to end: an OpenAI-format backbone + an official-format .pth give the
// reference logits through the user-facing command.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <regex>
#include <fstream>
#include <sstream>

#include "test_paths.h"
#include "evl/npy.h"
#include "test_util.h"

namespace evl::test {
namespace {

const std::string kEvl = EVL_BIN;
const std::string kFx = std::string(EVL_FIXTURE_DIR) + "/parity_a";

std::string FixtureFlags() {
  return " --config " + std::string(EVL_SOURCE_DIR) + "/configs/quickstart.pbtxt" +
         " --set model.backbone.preset=custom --set model.backbone.width=32 --set model.backbone.layers=3"
         " --set model.backbone.heads=4 --set model.backbone.patch_size=8 --set model.backbone.input_size=32"
         " --set model.backbone.precision=FP32 --set model.backbone.weights=" + kFx + "/clip.pt" +
         " --set model.decoder.num_layers=2 --set model.decoder.qkv_dim=32 --set model.decoder.num_heads=2"
         " --set model.num_frames=4 --set model.num_classes=5";
}

TEST(Predict, OfficialCheckpointGivesReferenceLogits) {
  std::string dir = ScratchDir("predict");
  { std::ofstream(dir + "/classes.json") << R"(["zero", "one", "two", "three", "four"])"; }
  auto r = RunCommand(kEvl + " predict" + FixtureFlags() + " --set data.class_map=" + dir + "/classes.json" +
                      " --checkpoint " + kFx + "/evl.pth --input " + kFx + "/input.npy --logits-out " + dir +
                      "/logits.npy");
  ASSERT_EQ(r.status, 0) << r.output;
  auto got = ReadNpy(dir + "/logits.npy"), want = ReadNpy(kFx + "/logits.npy");
  ASSERT_EQ(got.sizes(), want.sizes());
  EXPECT_LE(((got - want).abs().max() / want.abs().max()).item<double>(), 1e-5);
  // The classes are listed from the arg-max of the view-averaged softmax down, each with its
  // probability and name (every name is printed with --topk 5: the order is what is checked).
  const auto order = std::get<1>(want.softmax(1).mean(0).topk(5));
  const char* names[] = {"zero", "one", "two", "three", "four"};
  std::string expected = "top-5 of 2 view\\(s\\), mean softmax:\n";
  for (int64_t i = 0; i < 5; ++i) {
    const int64_t c = order[i].item<int64_t>();
    expected += " +" + std::to_string(c) + "  [0-9.]+  " + names[c] + "\n";
  }
  EXPECT_TRUE(std::regex_search(r.output, std::regex(expected))) << "expected:\n" << expected << "\nin:\n" << r.output;
}

TEST(Predict, VideoInputGivesOneRowPerTestView) {
  std::string dir = ScratchDir("predict_video");
  ASSERT_EQ(RunCommand(kEvl + " data synth --out " + dir + " --videos 1 --size 48x48").status, 0);
  auto r = RunCommand(kEvl + " predict" + FixtureFlags() + " --set data.num_temporal_views=3 --set data.num_spatial_views=3"
                      " --set data.spatial_size=32 --set data.sampling_rate=2 --input " + dir +
                      "/videos/00000.mp4 --logits-out " + dir + "/logits.npy");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(ReadNpy(dir + "/logits.npy").sizes(), (std::vector<int64_t>{9, 5}));
  EXPECT_NE(r.output.find("top-5 of 9 view(s)"), std::string::npos) << r.output;
}

TEST(Predict, WrongInputShapeIsNamed) {
  std::string dir = ScratchDir("predict_bad");
  WriteNpy(dir + "/small.npy", torch::zeros({3, 4, 16, 16}));
  auto r = RunCommand(kEvl + " predict" + FixtureFlags() + " --input " + dir + "/small.npy");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("small.npy: shape"), std::string::npos) << r.output;
}

TEST(Predict, TorchScriptGivenAsCheckpointIsRefused) {
  auto r = RunCommand(kEvl + " predict" + FixtureFlags() + " --checkpoint " + kFx + "/clip.pt --input " + kFx +
                      "/input.npy");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("TorchScript"), std::string::npos) << r.output;
}

// The model the weights belong to must be named: the embedded default would build another one.
TEST(Predict, NeedsAConfigOrACheckpointThatCarriesOne) {
  auto r = RunCommand(kEvl + " predict --checkpoint " + kFx + "/evl.pth --input " + kFx + "/input.npy");
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("give --config"), std::string::npos) << r.output;
}

// Several inputs in one model build, --topk, --json; a bad input is reported and the rest go on.
TEST(Predict, SeveralInputsAsJsonLinesWithTheirTopK) {
  const std::string dir = ScratchDir("predict_many");
  { std::ofstream(dir + "/broken.mp4") << "not a video"; }
  { std::ofstream(dir + "/list.txt") << kFx << "/input.npy 3\n" << dir << "/broken.mp4 1\n"; }
  auto r = RunCommand("(" + kEvl + " predict" + FixtureFlags() + " --json --topk 3 --input " + kFx +
                      "/input.npy --list " + dir + "/list.txt 2> " + dir + "/stderr.txt)");
  EXPECT_EQ(r.status, 1) << r.output;
  std::istringstream lines(r.output);
  std::vector<nlohmann::json> rows;
  for (std::string line; std::getline(lines, line);) rows.push_back(nlohmann::json::parse(line));
  ASSERT_EQ(rows.size(), 3u) << r.output;
  for (int i : {0, 1}) {
    EXPECT_EQ(rows[i]["views"], 2) << rows[i].dump();
    EXPECT_EQ(rows[i]["top"].size(), 3u) << rows[i].dump();
  }
  EXPECT_EQ(rows[0]["top"], rows[1]["top"]);
  EXPECT_NE(rows[2]["error"].get<std::string>().find("broken.mp4"), std::string::npos) << rows[2].dump();
  EXPECT_NE(ReadFile(dir + "/stderr.txt").find("no --checkpoint: the decoder is RANDOMLY INITIALISED"), std::string::npos);
}

}  // namespace
}  // namespace evl::test
