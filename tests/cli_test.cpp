#include <gtest/gtest.h>

#include <fstream>

#include "test_paths.h"
#include "test_util.h"

namespace evl::test {
namespace {

const std::string kEvl = EVL_BIN;

TEST(Cli, HelpListsEverySubcommand) {
  auto r = RunCommand(kEvl + " --help");
  EXPECT_EQ(r.status, 0) << r.output;
  for (const char* cmd : {"train", "eval", "predict", "launch", "submit", "data", "ckpt", "config", "info"})
    EXPECT_NE(r.output.find(cmd), std::string::npos) << cmd << " missing from:\n" << r.output;
  auto sub = RunCommand(kEvl + " config --help");
  EXPECT_EQ(sub.status, 0);
  EXPECT_NE(sub.output.find("--set"), std::string::npos);
}

TEST(Cli, InfoPrintsEveryDependencyVersion) {
  auto r = RunCommand(kEvl + " info");
  ASSERT_EQ(r.status, 0) << r.output;
  for (const char* dep : {"LibTorch   1.", "MPI        Open MPI", "NCCL", "FFmpeg     ", "protobuf   3.",
                          "BLAS", "threads"})
    EXPECT_NE(r.output.find(dep), std::string::npos) << dep << " missing from:\n" << r.output;
}

TEST(Cli, ConfigRoundTripsThroughPrintedText) {
  std::string dir = ScratchDir("cli_config");
  auto first = RunCommand(kEvl + " config --set model.num_frames=4 --set data.mean=0.1,0.2,0.3");
  ASSERT_EQ(first.status, 0) << first.output;
  EXPECT_NE(first.output.find("num_frames: 4"), std::string::npos);
  { std::ofstream(dir + "/printed.pbtxt") << first.output; }
  auto second = RunCommand(kEvl + " config --config " + dir + "/printed.pbtxt");
  ASSERT_EQ(second.status, 0) << second.output;
  EXPECT_EQ(first.output, second.output);
}

TEST(Cli, BadConfigExitsNonZeroNamingThePlace) {
  std::string dir = ScratchDir("cli_bad");
  { std::ofstream(dir + "/bad.pbtxt") << "model {\n  num_framez: 3\n}\n"; }
  auto r = RunCommand(kEvl + " config --config " + dir + "/bad.pbtxt");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("bad.pbtxt:2:3"), std::string::npos) << r.output;
  auto s = RunCommand(kEvl + " config --set model.nope=1");
  EXPECT_NE(s.status, 0);
  EXPECT_NE(s.output.find("--set model.nope=1"), std::string::npos) << s.output;
}

TEST(Cli, ShippedConfigsAreValid) {
  for (const char* name : {"quickstart", "k400_vitb16_8f_dec4x768", "k400_vitb16_16f_dec4x768", "k400_vitb16_32f_dec4x768",
                           "k400_vitl14_8f_dec4x1024", "k400_vitl14_16f_dec4x1024", "k400_vitl14_32f_dec4x1024"}) {
    auto r = RunCommand(kEvl + " config --config " + std::string(EVL_SOURCE_DIR) + "/configs/" + name + ".pbtxt");
    EXPECT_EQ(r.status, 0) << name << "\n" << r.output;
  }
  auto q = RunCommand(kEvl + " config --config " + std::string(EVL_SOURCE_DIR) + "/configs/quickstart.pbtxt");
  EXPECT_EQ(q.output, RunCommand(kEvl + " config").output) << "the embedded default is configs/quickstart.pbtxt";
}

TEST(Cli, UnfinishedSubcommandsDoNotPretend) {
  auto r = RunCommand(kEvl + " data prepare");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("not implemented"), std::string::npos) << r.output;
}

TEST(Cli, SubmitRefusesALayoutThatSplitsTheBatchUnevenly) {
  // Rendering needs no Slurm; the check happens before anything is written or submitted.
  auto r = RunCommand(kEvl + " submit --nodes 1 --tasks-per-node 3 --dry-run --set train.run_dir=scratch/submit_uneven");
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("train.batch_size 16 is not divisible by the 3 ranks"), std::string::npos) << r.output;
  auto s = RunCommand(kEvl + " submit --time '1 day' --dry-run --set train.run_dir=scratch/submit_uneven");
  EXPECT_EQ(s.status, 2) << s.output;
  EXPECT_NE(s.output.find("--time '1 day' contains spaces"), std::string::npos) << s.output;
}

}  // namespace
}  // namespace evl::test
