// The training loop's components, each alone (worker/train/src): the divergence guard, when and
// where the run's checkpoints are written (cadence, stop, best, keep-k), and when it evaluates.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <mutex>

#include "../worker/train/src/divergence_guard.h"
#include "../worker/train/src/metrics.h"
#include "../worker/train/src/periodic_evaluation.h"
#include "../worker/train/src/run_checkpoints.h"
#include "config.h"
#include "evl/adamw.h"
#include "evl/checkpoint_manager.h"
#include "evl/dataset_lists.h"
#include "evl/fault_injection.h"
#include "test_util.h"
#include "lone_communicator.h"
#include "tiny_model.h"

namespace evl::test {
namespace {

namespace fs = std::filesystem;
using Verdict = DivergenceGuard::Verdict;

EvlConfig Effective(const std::vector<std::string>& overrides) { return LoadEffectiveConfig("", overrides); }

TEST(DivergenceGuard, WithAScalerAnOverflowIsTheScalersBusiness) {
  DivergenceGuard guard(/*patience=*/2, /*has_scaler=*/true, "run");
  for (int64_t step = 1; step <= 5; ++step) EXPECT_EQ(guard.Check(step, 1.0, true, false, 1e-3), Verdict::kOk);
}

TEST(DivergenceGuard, PatienceCountsNonfiniteStepsInARowOnly) {
  DivergenceGuard guard(/*patience=*/3, /*has_scaler=*/false, "run");
  EXPECT_EQ(guard.Check(1, NAN, false, false, 1e-3), Verdict::kSkipped);
  EXPECT_EQ(guard.Check(2, 1.0, true, false, 1e-3), Verdict::kSkipped) << "an overflow without a scaler";
  EXPECT_EQ(guard.Check(3, 1.0, false, false, 1e-3), Verdict::kOk) << "a good step resets the count";
  EXPECT_EQ(guard.Check(4, INFINITY, false, false, 1e-3), Verdict::kSkipped);
  EXPECT_EQ(guard.Check(5, NAN, false, false, 1e-3), Verdict::kSkipped);
  EXPECT_EQ(guard.Check(6, NAN, false, false, 1e-3), Verdict::kDiverged);
  EXPECT_NE(guard.message().find("3 steps in a row"), std::string::npos) << guard.message();
  EXPECT_NE(guard.message().find("(steps 4-6)"), std::string::npos) << guard.message();
}

TEST(DivergenceGuard, AnUpdateThatMadeParametersNonfiniteEndsTheRunAtOnce) {
  DivergenceGuard guard(/*patience=*/100, /*has_scaler=*/true, "/some/run");
  EXPECT_EQ(guard.Check(7, 1.0, false, true, 1e-3), Verdict::kDiverged);
  EXPECT_NE(guard.message().find("the update of step 7"), std::string::npos) << guard.message();
  EXPECT_NE(guard.message().find("/some/run/checkpoints"), std::string::npos) << guard.message();
}

struct LoopFixture {
  explicit LoopFixture(const std::string& name, const std::vector<std::string>& overrides)
      : run(ScratchDir(name)),
        config(Effective([&] {
          auto o = overrides;
          o.push_back("train.run_dir=" + run);
          return o;
        }())),
        model(TinyEvlOptions()),
        optimizer(model->parameters()),
        state{model, optimizer, nullptr} {}
  std::string run;
  EvlConfig config;
  EVLTransformer model;
  torch::optim::AdamW optimizer;
  TrainState state;
};

std::vector<int64_t> StepsOnDisk(const std::string& run) {
  std::vector<int64_t> steps;
  for (const auto& path : ListCheckpoints(run)) steps.push_back(ReadCheckpointFile(path).step);
  return steps;
}

TEST(RunCheckpoints, SavesOnTheCadenceAtTheLastStepAndOnAStopKeepingTheNewestK) {
  LoopFixture f("loop_cadence", {"train.num_steps=10", "train.save_freq=4", "train.keep_last=2"});
  {
    RunCheckpoints checkpoints(f.config, 1, /*writer=*/true);
    for (int64_t step = 1; step <= 10; ++step) {
      checkpoints.MaybeSave(step, f.state, 1e-3, /*stop=*/step == 6);
      // Each write done before the next step: a save behind a write in flight may be replaced by a
      // newer one (ASaveNeverWaitsForTheWriteInFlight), which is not what this test is about.
      EXPECT_TRUE(checkpoints.Finish());
    }
  }
  EXPECT_EQ(StepsOnDisk(f.run), (std::vector<int64_t>{10, 8})) << "saved 4, 6 (stop), 8, 10; kept the newest 2";
}

TEST(RunCheckpoints, OnlyTheWriterWrites) {
  LoopFixture f("loop_not_writer", {"train.num_steps=2", "train.save_freq=1"});
  RunCheckpoints checkpoints(f.config, 2, /*writer=*/false);
  checkpoints.MaybeSave(1, f.state, 1e-3, false);
  EvalReport report;
  report.top1_all = 50;
  checkpoints.MaybeSaveBest(report, 1, &f.state, 1e-3);
  EXPECT_TRUE(checkpoints.Finish());
  EXPECT_FALSE(fs::exists(f.run + "/checkpoints"));
}

TEST(RunCheckpoints, TheBestIsWrittenInTheBackgroundAndOnlyWhenBeaten) {
  LoopFixture f("loop_best", {"train.num_steps=10", "train.save_freq=0", "eval.keep_best=true"});
  RunCheckpoints checkpoints(f.config, 1, /*writer=*/true);
  EvalReport report;
  for (auto [step, top1] : std::vector<std::pair<int64_t, double>>{{2, 40}, {4, 60}, {6, 55}}) {
    report.top1_all = top1;
    checkpoints.MaybeSaveBest(report, step, &f.state, 1e-3);
  }
  ASSERT_TRUE(checkpoints.Finish());
  EXPECT_EQ(f.state.best_top1, 60);
  EXPECT_EQ(f.state.best_step, 4);
  const CheckpointState best = ReadCheckpointFile(BestCheckpointPath(f.run));
  EXPECT_EQ(best.step, 4);
  EXPECT_TRUE(ListCheckpoints(f.run).empty()) << "a best checkpoint is not a rotating one";
  EXPECT_FALSE(fs::exists(f.run + "/checkpoints/latest")) << "latest names rotating checkpoints only";
}

CheckpointState TinyCheckpoint(int64_t step) {
  CheckpointState s;
  s.step = step;
  s.tensors.emplace_back("model/w", torch::full({4}, static_cast<float>(step)));
  return s;
}

// Blocks every checkpoint write until released, as a slow shared filesystem does.
class HeldWrites : public FaultInjector {
 public:
  void DuringCheckpointWrite() override {
    std::unique_lock<std::mutex> l(mu_);
    entered_ = true;
    cv_.notify_all();
    // Bounded only so that a broken Save() fails this test instead of hanging it.
    if (!cv_.wait_for(l, std::chrono::seconds(60), [&] { return released_; })) timed_out_ = released_ = true;
  }
  // Until the writer is inside a write (bounded like the above).
  void AwaitWriting() {
    std::unique_lock<std::mutex> l(mu_);
    cv_.wait_for(l, std::chrono::seconds(60), [&] { return entered_; });
  }
  void Release() {
    std::lock_guard<std::mutex> l(mu_);
    released_ = true;
    cv_.notify_all();
  }
  bool timed_out() {
    std::lock_guard<std::mutex> l(mu_);
    return timed_out_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool entered_ = false, released_ = false, timed_out_ = false;
};

// Save() used to block behind a write in flight while the other ranks waited in the next collective
// under the stall timeout: a slow filesystem turned a save into a stall abort. It never blocks now;
// a save still waiting when a newer one comes is replaced by it.
TEST(RunCheckpoints, ASaveNeverWaitsForTheWriteInFlight) {
  const std::string run = ScratchDir("retention_nonblocking");
  auto held = std::make_unique<HeldWrites>();
  HeldWrites* writes = held.get();
  SetFaultInjectorForTest(std::move(held));
  {
    AsyncCheckpointer c(run, 5);
    c.Save(TinyCheckpoint(1));  // in flight, held
    writes->AwaitWriting();
    c.Save(TinyCheckpoint(2));  // waits behind it ...
    c.Save(TinyCheckpoint(3));  // ... and is replaced by this one
    c.SaveBest(TinyCheckpoint(3));
    writes->Release();     // reached only if the saves above returned
    EXPECT_TRUE(c.Wait());
  }
  EXPECT_FALSE(writes->timed_out()) << "a Save() blocked behind the write in flight";
  SetFaultInjectorForTest(nullptr);
  EXPECT_EQ(ListCheckpoints(run), (std::vector<std::string>{CheckpointPath(run, 3), CheckpointPath(run, 1)}));
  EXPECT_EQ(ReadCheckpointFile(BestCheckpointPath(run)).step, 3);
  EXPECT_EQ(ReadFile(run + "/checkpoints/latest"), "ckpt-00000003.evlckpt\n");
}

// The lists as the job reads them (rank 0's bytes, parsed by every rank): the roots joined, the
// validation list's own root, and a bad line as one problem naming the field, file and line.
TEST(DatasetLists, ParsedWithTheirRootsAndABadLineIsAProblemNotAThrow) {
  const std::string dir = ScratchDir("dataset_lists");
  { std::ofstream(dir + "/train.txt") << "a.mp4 1\n# comment\n/abs/b.mp4 3\n"; }
  { std::ofstream(dir + "/val.txt") << "c.mp4 2\n"; }
  LoneCommunicator comm;
  const EvlConfig config = Effective({"data.train_list=" + dir + "/train.txt", "data.val_list=" + dir + "/val.txt",
                                      "data.data_root=/root", "data.val_data_root=/val"});
  const DatasetLists lists = ReadDatasetLists(config, true, true, comm);
  EXPECT_TRUE(lists.problems.empty());
  ASSERT_EQ(lists.train.size(), 2u);
  EXPECT_EQ(lists.train[0].path, "/root/a.mp4");
  EXPECT_EQ(lists.train[1].path, "/abs/b.mp4");
  EXPECT_EQ(lists.train[1].label, 3);
  ASSERT_EQ(lists.val.size(), 1u);
  EXPECT_EQ(lists.val[0].path, "/val/c.mp4");
  EXPECT_TRUE(ReadDatasetLists(config, true, false, comm).val.empty()) << "the val list was not asked for";

  { std::ofstream(dir + "/val.txt") << "c.mp4 2\nd.mp4 9\n"; }
  const DatasetLists bad = ReadDatasetLists(config, true, true, comm);
  EXPECT_EQ(bad.problems, (std::vector<std::string>{"data.val_list: " + dir + "/val.txt:2: label 9 is outside [0, 4)"}));
  const EvlConfig missing = Effective({"data.train_list=" + dir + "/none.txt"});
  const DatasetLists none = ReadDatasetLists(missing, true, true, comm);
  ASSERT_EQ(none.problems.size(), 1u);
  EXPECT_NE(none.problems[0].find("data.train_list: " + dir + "/none.txt: cannot open dataset list"), std::string::npos)
      << none.problems[0];
}

TEST(PeriodicEvaluation, DueEveryEvalFreqStepsAndAtTheLastButNotOnAStopOrWithoutAValList) {
  LoopFixture f("loop_eval", {"train.num_steps=10", "train.eval_freq=4", "data.val_list=/x/val.txt"});
  LoneCommunicator comm;
  const std::vector<VideoEntry> videos = {{"/x/a.mp4", 0}};
  PeriodicEvaluation evaluation(f.model, f.config, videos, comm, torch::kCPU, nullptr);
  std::vector<int64_t> due;
  for (int64_t step = 1; step <= 10; ++step)
    if (evaluation.Due(step, false)) due.push_back(step);
  EXPECT_EQ(due, (std::vector<int64_t>{4, 8, 10}));
  EXPECT_FALSE(evaluation.Due(8, /*stop=*/true));
  LoopFixture none("loop_eval_none", {"train.num_steps=10", "train.eval_freq=4"});
  const std::vector<VideoEntry> no_videos;
  PeriodicEvaluation without(none.model, none.config, no_videos, comm, torch::kCPU, nullptr);
  EXPECT_FALSE(without.Due(4, false));
}

// metrics.jsonl dropped an abandoned continuation's lines on resume, but TensorBoard kept showing
// them beside the resumed run. A restart marker (SessionLog START at the first step this start
// logs) makes TensorBoard purge them.
TEST(MetricsLog, AResumedRunMarksItsRestartForTensorBoard) {
  const std::string run = ScratchDir("loop_tb_restart");
  { MetricsLog log(run, /*resumed_at=*/4); }
  std::string bytes;
  for (const auto& e : fs::directory_iterator(run))
    if (e.path().filename().string().rfind("events.out.tfevents.", 0) == 0) {
      std::ifstream in(e.path(), std::ios::binary);
      bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    }
  // Event{step: 5, session_log: {status: START}} on the wire: field 2 = 5, field 6 = {field 1 = 1}.
  EXPECT_NE(bytes.find(std::string("\x10\x05\x32\x02\x08\x01", 6)), std::string::npos);
}

// The multi-tensor AdamW against LibTorch's own, step for step: two groups (weight decay and
// none), a parameter that misses a step (its own step count, its own bias correction), and the
// state LibTorch's serializers and evl's checkpoints read. Bit for bit on the CPU.
TEST(MultiTensorAdamW, IsLibTorchsAdamWBitForBit) {
  torch::manual_seed(11);
  auto make = [] {
    torch::manual_seed(12);
    return std::vector<torch::Tensor>{torch::randn({7, 5}).requires_grad_(), torch::randn({5}).requires_grad_(),
                                      torch::randn({3, 2, 2}).requires_grad_()};
  };
  auto ours = make(), theirs = make();
  auto groups = [](std::vector<torch::Tensor>& p) {
    std::vector<torch::optim::OptimizerParamGroup> g;
    g.emplace_back(std::vector<torch::Tensor>{p[0], p[2]},
                   std::make_unique<torch::optim::AdamWOptions>(torch::optim::AdamWOptions(4e-3).weight_decay(0.05)));
    g.emplace_back(std::vector<torch::Tensor>{p[1]},
                   std::make_unique<torch::optim::AdamWOptions>(torch::optim::AdamWOptions(1e-2).weight_decay(0)));
    return g;
  };
  MultiTensorAdamW a(groups(ours));
  torch::optim::AdamW b(groups(theirs));
  for (int step = 0; step < 6; ++step) {
    for (size_t i = 0; i < ours.size(); ++i) {
      // The last parameter gets no gradient at step 2: it then lags one step behind.
      const bool skip = i == 2 && step == 2;
      auto g = torch::randn(ours[i].sizes());
      ours[i].mutable_grad() = skip ? torch::Tensor() : g.clone();
      theirs[i].mutable_grad() = skip ? torch::Tensor() : g.clone();
    }
    a.step();
    b.step();
    for (size_t i = 0; i < ours.size(); ++i)
      ASSERT_TRUE(torch::equal(ours[i], theirs[i])) << "parameter " << i << " after step " << step + 1 << ": max diff "
                                                    << (ours[i] - theirs[i]).abs().max().item<double>();
  }
  // The same state under LibTorch's keys: what train_state.cpp snapshots and restores.
  ASSERT_EQ(a.state().size(), b.state().size());
  for (size_t i = 0; i < ours.size(); ++i) {
    const auto key = [](const torch::Tensor& t) { return c10::guts::to_string(t.unsafeGetTensorImpl()); };
    ASSERT_TRUE(a.state().count(key(ours[i]))) << "no state under LibTorch's key for parameter " << i;
    const auto& want = static_cast<const torch::optim::AdamWParamState&>(*b.state().at(key(theirs[i])));
    const auto& got = static_cast<const torch::optim::AdamWParamState&>(*a.state().at(key(ours[i])));
    EXPECT_EQ(got.step(), want.step());
    EXPECT_TRUE(torch::equal(got.exp_avg(), want.exp_avg()));
    EXPECT_TRUE(torch::equal(got.exp_avg_sq(), want.exp_avg_sq()));
  }
}

}  // namespace
}  // namespace evl::test
