// Distributed evaluation: every video exactly once at any world size, identical scores, corrupt
// videos reported and counted, aggregation modes, and agreement with the training log.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <regex>

#include "test_paths.h"
#include "evl/evaluator.h"
#include "evl/npy.h"
#include "test_util.h"

namespace evl::test {
namespace {

const std::string kEvl = EVL_BIN;
const std::string kMpirun = std::string(MPIEXEC) + " --allow-run-as-root --oversubscribe --bind-to none ";

TEST(Aggregation, HandComputedExample) {
  auto logits = torch::tensor({1.0, 0.0, 0.0, 1.0, 2.0, 0.0}, torch::kDouble).view({3, 2});
  const double a = 1 / (1 + std::exp(-1.0)), b = 1 / (1 + std::exp(-2.0));  // softmax of [1,0], [2,0]
  auto mean_softmax = AggregateViews(logits, MEAN_SOFTMAX);
  EXPECT_NEAR(mean_softmax[0].item<double>(), (a + (1 - a) + b) / 3, 1e-12);
  EXPECT_NEAR(mean_softmax[1].item<double>(), ((1 - a) + a + (1 - b)) / 3, 1e-12);
  auto mean_logits = AggregateViews(logits, MEAN_LOGITS);
  EXPECT_NEAR(mean_logits[0].item<double>(), 1.0, 1e-12);
  EXPECT_NEAR(mean_logits[1].item<double>(), 1.0 / 3, 1e-12);
  auto max_softmax = AggregateViews(logits, MAX_SOFTMAX);
  EXPECT_NEAR(max_softmax[0].item<double>(), b, 1e-12);
  EXPECT_NEAR(max_softmax[1].item<double>(), a, 1e-12);
}

struct EvalSetup {
  std::string data_flags, dir, ckpt, good_list, bad_list;
};

// A short training run (checkpoint + its own final evaluation) and two eval lists.
const EvalSetup& Prepared() {
  static const EvalSetup s = [] {
    EvalSetup s;
    s.data_flags = SharedSynthData(kEvl);
    s.dir = ScratchDir("eval_setup_" + std::to_string(getpid()));
    const std::string common = s.data_flags +
                               " --set train.num_steps=30 --set train.batch_size=8 --set train.threads=1"
                               " --set train.eval_freq=30 --set data.num_temporal_views=2 --set data.num_spatial_views=3"
                               " --set data.num_workers=1 --set train.run_dir=" + s.dir;
    RunCommand(kEvl + " train" + common);
    s.ckpt = s.dir + "/checkpoints/ckpt-00000030.evlckpt";
    std::regex re("--set data.train_list=(\\S+)");
    std::smatch m;
    std::regex_search(s.data_flags, m, re);
    std::ifstream train(m[1].str());
    std::ofstream good(s.dir + "/good.txt"), bad(s.dir + "/bad.txt");
    std::string line;
    for (int i = 0; i < 7 && std::getline(train, line); ++i) {
      good << line << "\n";
      if (i < 6) bad << line << "\n";
    }
    bad << "videos/corrupt.mp4 1\n";
    s.good_list = s.dir + "/good.txt";
    s.bad_list = s.dir + "/bad.txt";
    return s;
  }();
  return s;
}

std::vector<nlohmann::json> Predictions(const std::string& dir) {
  std::ifstream in(dir + "/predictions.jsonl");
  std::vector<nlohmann::json> out;
  for (std::string line; std::getline(in, line);) out.push_back(nlohmann::json::parse(line));
  return out;
}

std::string EvalCmd(const EvalSetup& s, int np, const std::string& list, const std::string& out, int workers = 1) {
  return kMpirun + "-np " + std::to_string(np) + " " + kEvl + " eval" + s.data_flags +
         " --set data.val_list=" + list + " --set data.num_temporal_views=2 --set data.num_spatial_views=3"
         " --set eval.batch_size=4 --set train.threads=1 --set data.num_workers=" + std::to_string(workers) +
         " --checkpoint " + s.ckpt + " --out " + out;
}

// Decode threads hand videos over in list order, so their number changes nothing either.
TEST(DistributedEval, EveryVideoOnceAndTheSameScoresAtAnyWorldSizeAndWorkerCount) {
  const EvalSetup& s = Prepared();
  ASSERT_EQ(RunCommand("test -f " + s.ckpt).status, 0) << "training did not leave a checkpoint";
  std::vector<std::vector<nlohmann::json>> runs;
  for (auto [np, workers] : {std::pair{1, 1}, {2, 3}, {3, 2}}) {
    const std::string out = ScratchDir("eval_np" + std::to_string(np) + "_" + std::to_string(getpid()));
    auto r = RunCommand(EvalCmd(s, np, s.good_list, out, workers));
    ASSERT_EQ(r.status, 0) << r.output;
    auto p = Predictions(out);
    ASSERT_EQ(p.size(), 7u) << "np=" << np;
    for (int i = 0; i < 7; ++i) EXPECT_EQ(p[i]["index"].get<int>(), i);
    runs.push_back(p);
  }
  for (size_t k = 1; k < runs.size(); ++k)
    for (int i = 0; i < 7; ++i)
      for (int j = 0; j < 4; ++j) {
        EXPECT_EQ(runs[k][i]["top5"][j][0], runs[0][i]["top5"][j][0]);
        EXPECT_NEAR(runs[k][i]["top5"][j][1].get<double>(), runs[0][i]["top5"][j][1].get<double>(), 1e-6);
      }
}

TEST(DistributedEval, CorruptVideoIsReportedAndCounted) {
  const EvalSetup& s = Prepared();
  const std::string out = ScratchDir("eval_bad_" + std::to_string(getpid()));
  { std::ofstream(out + "/classes.json") << R"(["east", "west", "north", "south"])"; }
  auto r = RunCommand(EvalCmd(s, 2, s.bad_list, out) + " --save-scores --set data.class_map=" + out + "/classes.json");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("corrupt.mp4"), std::string::npos) << r.output;
  nlohmann::json m = nlohmann::json::parse(std::ifstream(out + "/metrics.json"));
  EXPECT_EQ(m["videos"], 7);
  EXPECT_EQ(m["evaluated"], 6);
  EXPECT_EQ(m["skipped"], 1);
  // "over all" keeps the undecodable video in the denominator
  EXPECT_NEAR(m["top1"].get<double>(), m["top1_decoded"].get<double>() * 6 / 7, 1e-9);
  auto p = Predictions(out);
  ASSERT_EQ(p.size(), 7u);
  EXPECT_FALSE(p[6]["decoded"].get<bool>());
  // The reason travels from the rank that met it; class names from the class map.
  EXPECT_NE(p[6]["error"].get<std::string>().find("corrupt.mp4"), std::string::npos) << p[6].dump();
  const char* names[] = {"east", "west", "north", "south"};
  EXPECT_EQ(p[0]["label_name"], names[p[0]["label"].get<int>()]) << p[0].dump();
  EXPECT_EQ(p[0]["top5_names"][0], names[p[0]["top5"][0][0].get<int>()]) << p[0].dump();
  std::ifstream conf(out + "/confusion.csv");
  std::string header;
  std::getline(conf, header);
  EXPECT_EQ(header, "true\\predicted,\"east\",\"west\",\"north\",\"south\"");
  // --save-scores: every video's score vector in list order, NaN where it could not be decoded.
  const auto scores = ReadNpy(out + "/scores.npy");
  ASSERT_EQ(scores.sizes(), (std::vector<int64_t>{7, 4}));
  EXPECT_TRUE(scores[6].isnan().all().item<bool>());
  EXPECT_NEAR(scores[0][p[0]["top5"][0][0].get<int>()].item<double>(), p[0]["top5"][0][1].get<double>(), 1e-6);
}

// A video path in any encoding must not stop a job. A (corrupt) file named with the bytes 0xff 0xfe
// made nlohmann's dump() throw on rank 0 (exit 1, and Open MPI failed while printing the error),
// at the same evaluation after every requeue. A long reason was cut at 239 bytes, possibly inside
// a UTF-8 sequence.
TEST(DistributedEval, APathInAnyEncodingIsReportedNotFatal) {
  const EvalSetup& s = Prepared();
  const std::string out = ScratchDir("eval_bytes_" + std::to_string(getpid()));
  const std::string bad_name = "videos/bad-\xff\xfe-" + std::string(300, 'x') + "-\xc3\xa9.mp4";
  const std::string top = std::filesystem::absolute(s.dir).string();  // not under data.data_root
  { std::ofstream(top + "/" + bad_name) << "not a video"; }
  const std::string list = out + "/list.txt";
  {
    std::ifstream good(s.good_list);
    std::ofstream l(list);
    l << good.rdbuf() << top << "/" << bad_name << " 1\n";
  }
  auto r = RunCommand(EvalCmd(s, 2, list, out));
  ASSERT_EQ(r.status, 0) << r.output;
  auto p = Predictions(out);  // every line parses: valid UTF-8 JSON
  ASSERT_EQ(p.size(), 8u);
  EXPECT_FALSE(p[7]["decoded"].get<bool>());
  // path_hex keeps the bytes: "bad-" 0xff 0xfe "-" where they are in the path.
  EXPECT_EQ(p[7]["path_hex"].get<std::string>().find("6261642d" "fffe" "2d"), 2 * (top.size() + 8)) << p[7].dump();
  EXPECT_EQ(p[7]["path_hex"].get<std::string>().size(), 2 * (top.size() + bad_name.size() + 1));
  const std::string error = p[7]["error"].get<std::string>();
  EXPECT_GT(error.size(), 300u) << "the reason was cut short: " << error;
  EXPECT_NE(error.find("x-\xc3\xa9.mp4"), std::string::npos) << error;
}

// The outputs were plain writes with no error check: a full disk left empty files and status 0.
// Each now goes through WriteFileAtomically; one that cannot be written (a directory in its place
// here: the rename fails) is an error naming the file, and the files before it are whole.
TEST(DistributedEval, AnOutputThatCannotBeWrittenIsAnErrorNamingIt) {
  const EvalSetup& s = Prepared();
  for (const std::string file : {"metrics.json", "confusion.csv", "scores.npy"}) {
    const std::string out = ScratchDir("eval_unwritable_" + std::to_string(getpid()));
    RunCommand("mkdir -p " + out + "/" + file);
    auto r = RunCommand(EvalCmd(s, 1, s.good_list, out) + " --save-scores");
    EXPECT_NE(r.status, 0) << file << "\n" << r.output;
    EXPECT_NE(r.output.find(out + "/" + file), std::string::npos) << file << "\n" << r.output;
    EXPECT_EQ(Predictions(out).size(), 7u) << file << ": predictions.jsonl, written before it, is not whole";
  }
}

TEST(DistributedEval, CheckpointEvaluationMatchesTheTrainingLog) {
  const EvalSetup& s = Prepared();
  double logged = -1;
  for (const auto& j : ReadMetrics(s.dir, "eval_step"))
    if (j["eval_step"] == 30) logged = j["top1"].get<double>();
  ASSERT_GE(logged, 0) << "no evaluation in the training log";
  const std::string out = ScratchDir("eval_log_" + std::to_string(getpid()));
  auto r = RunCommand(kMpirun + "-np 2 " + kEvl + " eval" + s.data_flags +
                      " --set data.num_temporal_views=2 --set data.num_spatial_views=3 --set train.threads=1"
                      " --checkpoint " + s.ckpt + " --out " + out);
  ASSERT_EQ(r.status, 0) << r.output;
  nlohmann::json m = nlohmann::json::parse(std::ifstream(out + "/metrics.json"));
  EXPECT_NEAR(m["top1"].get<double>(), logged, 1e-6);
  // eval.keep_best (default on) kept that evaluation's checkpoint.
  EXPECT_EQ(RunCommand(kEvl + " ckpt verify " + s.dir + "/checkpoints/best.evlckpt").status, 0);
}

}  // namespace
}  // namespace evl::test
