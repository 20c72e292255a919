// Unit tests of the pieces the training loop is made of, one process, no MPI: stop signals, the
// MPI thread-level check, autocast nesting, the sampler, the learning-rate schedule, the resume
// config comparison, sbatch's job id, checkpoint retention and `latest`, the train state, atomic
// file writes, and the gradient reducer's hooks.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <condition_variable>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <set>
#include <thread>

#include "../worker/train/src/train_state.h"
#include "config.h"
#include "evl/abort.h"
#include "evl/autocast.h"
#include "evl/checkpoint_manager.h"
#include "evl/crc32c.h"
#include "evl/file_util.h"
#include "evl/grad_sync.h"
#include "evl/ordered_prefetcher.h"
#include "evl/predict.h"
#include "evl/model_factory.h"
#include "evl/sampler.h"
#include "evl/schedule.h"
#include "evl/slurm.h"
#include "evl/stop_signal.h"
#include "evl/topology.h"
#include "evl/video_list.h"
#include "lone_communicator.h"
#include "test_paths.h"
#include "test_util.h"
#include "tiny_model.h"

namespace evl::test {
namespace {

namespace fs = std::filesystem;

void* HandlerOf(int sig) {
  struct sigaction now = {};
  sigaction(sig, nullptr, &now);
  return reinterpret_cast<void*>(now.sa_handler);
}

// The threads wait only for room in the window: while the consumer asks for each item before it
// can exist (production gated on the consumer), they never wait; once the consumer holds back
// with the window full, they do, and that is counted.
TEST(OrderedPrefetcher, ThreadsWaitOnlyWhenTheWindowIsFull) {
  std::mutex mu;
  std::condition_variable cv;
  int64_t asked = 0;  // items the consumer has asked for
  OrderedPrefetcher<int64_t, int> gated(20, 2, 4, [&](int64_t k, int&) {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return asked > k - 1; });  // item k is made only after item k-1 was asked for
    return k;
  });
  int64_t item;
  for (int64_t k = 0; k < 20; ++k) {
    {
      std::lock_guard<std::mutex> lock(mu);
      asked = k + 1;
    }
    cv.notify_all();
    ASSERT_TRUE(gated.Next(&item));
  }
  // Item k may start only when k < asked-1 + 4: the gate holds production at most 2 items ahead.
  EXPECT_EQ(gated.room_wait_s(), 0.0);

  std::atomic<int> made{0};
  OrderedPrefetcher<int64_t, int> eager(10, 2, 3, [&](int64_t k, int&) {
    ++made;
    return k;
  });
  while (eager.waiting_for_room() < 2) std::this_thread::yield();  // the window (3 items) is full
  EXPECT_EQ(made, 3);
  for (int64_t k = 0; k < 10; ++k) ASSERT_TRUE(eager.Next(&item));
  EXPECT_GT(eager.room_wait_s(), 0.0);
  EXPECT_EQ(made, 10);
}

// Items come out in order whatever the threads do: later items are made faster than earlier ones.
TEST(OrderedPrefetcher, HandsItemsOverInOrderAndNeverRunsMoreThanTheWindowAhead) {
  struct State {
    int uses = 0;  // one per thread, reused from item to item
  };
  std::atomic<int64_t> highest{-1};
  std::atomic<int64_t> consumed{0};
  std::atomic<bool> window_kept{true};
  constexpr int64_t kAhead = 3;
  OrderedPrefetcher<int64_t, State> p(40, 4, kAhead, [&](int64_t k, State& state) {
    ++state.uses;
    if (k > consumed + kAhead) window_kept = false;  // `consumed` may lag Next() by one
    std::this_thread::sleep_for(std::chrono::microseconds((40 - k) * 50));
    int64_t h = highest;
    while (k > h && !highest.compare_exchange_weak(h, k)) {
    }
    return k * k;
  });
  int64_t item = -1;
  for (int64_t k = 0; k < 40; ++k) {
    ASSERT_TRUE(p.Next(&item));
    EXPECT_EQ(item, k * k);
    consumed = k + 1;
  }
  EXPECT_FALSE(p.Next(&item));
  EXPECT_TRUE(window_kept);
}

TEST(OrderedPrefetcher, TheFirstErrorReachesTheConsumerWithItsType) {
  OrderedPrefetcher<int, int> p(100, 3, 8, [](int64_t k, int&) -> int {
    if (k == 5) throw DataError("video 5 is broken");
    return static_cast<int>(k);
  });
  int item = 0;
  try {
    for (int k = 0; k < 100; ++k) p.Next(&item);
    ADD_FAILURE() << "no error";
  } catch (const DataError& e) {
    EXPECT_STREQ(e.what(), "video 5 is broken");
  }
}

TEST(OrderedPrefetcher, StopsMidSequenceWhenDestroyed) {
  std::atomic<int> made{0};
  {
    OrderedPrefetcher<int, int> p(1000000, 2, 4, [&](int64_t k, int&) {
      ++made;
      return static_cast<int>(k);
    });
    int item;
    ASSERT_TRUE(p.Next(&item));
  }
  EXPECT_LE(made.load(), 1 + 4 + 2);  // the consumed one, the window, one in hand per thread
}

// MPI_Abort can wait indefinitely for an unreachable node's daemons (seen with a link set down:
// 120 s and counting). A rank that aborts ends itself anyway after the grace period.
TEST(AbortJobDeathTest, AnAbortThatHangsStillEndsTheProcess) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(AbortWithin(1.0, kExitStalled, {}, [] {
                for (;;) pause();  // an MPI_Abort that never gets through
              }),
              testing::ExitedWithCode(kExitStalled), "did not end this process within 1 s");
  EXPECT_EXIT(AbortWithin(60.0, 6, {}, [] {}), testing::ExitedWithCode(6), "");  // an abort that returns
}

// A log sink that blocks: glog calls it holding its global mutex, as a thread stuck opening
// logs/rankR.log on a shared filesystem whose link is down holds it.
class BlockingSink : public google::LogSink {
 public:
  void send(google::LogSeverity, const char*, const char*, int, const struct ::tm*, const char*, size_t) override {
    for (;;) pause();
  }
};

// The stall report used to go through glog: with glog's mutex held elsewhere, neither the report
// nor MPI_Abort nor the _Exit timer (started after them) ever ran, and the rank hung.
TEST(AbortJobDeathTest, TheWatchdogDoesNotNeedGlog) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        static BlockingSink sink;
        google::AddLogSink(&sink);
        std::thread([] { LOG(WARNING) << "this thread now holds glog's mutex for good"; }).detach();
        std::this_thread::sleep_for(std::chrono::milliseconds(100));  // not needed for the outcome
        AbortWithin(1.0, kExitStalled, [] { return "rank 1: collective #7 'x' did not complete"; }, [] {
          LOG(ERROR) << "an abort path that logs";  // blocks on glog's mutex
        });
      },
      testing::ExitedWithCode(kExitStalled), "rank 1: collective #7 'x' did not complete(.|\n)*did not end this process");
}

TEST(StopSignal, ASecondSigtermWhileAStopIsPendingRestoresTheDefaultAction) {
  ResetStopSignalForTest();
  std::raise(SIGTERM);
  EXPECT_EQ(StopSignal(), SIGTERM);
  EXPECT_NE(HandlerOf(SIGTERM), reinterpret_cast<void*>(SIG_DFL)) << "the first SIGTERM is a stop request";
  std::raise(SIGTERM);  // handled: the default action comes back only now
  EXPECT_EQ(HandlerOf(SIGTERM), reinterpret_cast<void*>(SIG_DFL)) << "a hung rank could not be killed";
  ResetStopSignalForTest();
  std::raise(SIGUSR1);  // Slurm's warning, then the time limit's SIGTERM: still one request
  std::raise(SIGTERM);
  EXPECT_EQ(StopSignal(), SIGUSR1);
  EXPECT_NE(HandlerOf(SIGTERM), reinterpret_cast<void*>(SIG_DFL));
  ResetStopSignalForTest();
  signal(SIGTERM, SIG_DFL);
  signal(SIGUSR1, SIG_DFL);
}

// A scancel (SIGTERM) that arrived while the time limit's (SIGUSR1) checkpoint was written still led
// to `scontrol requeue`: the first signal decided. The last one's meaning wins.
TEST(StopSignal, ACancelDuringATimeLimitStopIsACancel) {
  ResetStopSignalForTest();
  raise(SIGUSR1);
  EXPECT_TRUE(RequeueAfterStop(kExitPreempted));
  EXPECT_FALSE(RequeueAfterStop(kExitStalled)) << "only a stop that saved a checkpoint requeues itself";
  raise(SIGTERM);
  EXPECT_EQ(StopSignal(), SIGUSR1);
  EXPECT_EQ(LastStopSignal(), SIGTERM);
  EXPECT_FALSE(RequeueAfterStop(kExitPreempted));
  ResetStopSignalForTest();
  raise(SIGTERM);
  EXPECT_FALSE(RequeueAfterStop(kExitPreempted));
  ResetStopSignalForTest();
}

TEST(Topology, LessThanMpiThreadMultipleIsAnError) {
  EXPECT_NO_THROW(RequireThreadMultiple(3));
  try {
    RequireThreadMultiple(2);
    FAIL() << "MPI_THREAD_SERIALIZED accepted";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("MPI_THREAD_SERIALIZED"), std::string::npos) << e.what();
  }
}

TEST(Autocast, ScopesNestAndRestoreWhatWasThere) {
  ASSERT_FALSE(CpuAutocastEnabled());
  {
    AutocastScope outer(false, AutocastDtype::kBFloat16);
    {
      AutocastScope inner(false, AutocastDtype::kBFloat16);
      EXPECT_TRUE(CpuAutocastEnabled());
    }
    EXPECT_TRUE(CpuAutocastEnabled()) << "the inner scope switched the outer one off";
    auto a = torch::randn({4, 4});
    EXPECT_EQ(torch::mm(a, a).scalar_type(), torch::kBFloat16);
    AutocastScope off(false, AutocastDtype::kOff);  // kOff leaves the surrounding state alone
    EXPECT_TRUE(CpuAutocastEnabled());
  }
  EXPECT_FALSE(CpuAutocastEnabled());
}

TEST(Sampler, EachEpochIsAPermutationAndRanksSplitTheGlobalBatch) {
  GlobalSampler s(10, 4, 7);
  std::multiset<int64_t> epoch0;
  for (int64_t step = 0; step < 5; ++step) {  // 20 indices = two epochs of 10
    const auto g = s.GlobalIndices(step);
    ASSERT_EQ(g.size(), 4u);
    std::vector<int64_t> joined;
    for (int r = 0; r < 2; ++r)
      for (int64_t i : s.RankIndices(step, r, 2)) joined.push_back(i);
    EXPECT_EQ(joined, g) << "rank slices are not the contiguous halves of the global batch";
    for (size_t k = 0; k < g.size() && epoch0.size() < 10; ++k) epoch0.insert(g[k]);
  }
  EXPECT_EQ(std::set<int64_t>(epoch0.begin(), epoch0.end()).size(), 10u) << "epoch 0 is not a permutation";
  EXPECT_EQ(GlobalSampler(10, 4, 7).GlobalIndices(3), s.GlobalIndices(3)) << "not a function of (seed, step)";
  EXPECT_NE(GlobalSampler(10, 4, 8).GlobalIndices(0), s.GlobalIndices(0)) << "the seed does not matter";
  EXPECT_EQ(s.epoch_of_step(2), 0);
  EXPECT_EQ(s.epoch_of_step(3), 1);
}

TEST(Schedule, WarmupThenHalfACosineToZero) {
  TrainConfig t;
  t.set_lr(1.0);
  t.set_warmup_steps(4);
  t.set_num_steps(104);
  EXPECT_DOUBLE_EQ(LearningRate(t, 0), 0.25);
  EXPECT_DOUBLE_EQ(LearningRate(t, 3), 1.0);
  EXPECT_DOUBLE_EQ(LearningRate(t, 4), 1.0);
  EXPECT_NEAR(LearningRate(t, 54), 0.5, 1e-12);
  EXPECT_NEAR(LearningRate(t, 104), 0.0, 1e-12);
  t.set_warmup_steps(0);
  EXPECT_DOUBLE_EQ(LearningRate(t, 0), 1.0);
}

EvlConfig Effective(const std::vector<std::string>& overrides) { return LoadEffectiveConfig("", overrides); }

// A run resumed at step 4000 that took 100 s for its first 1000 steps has 5000 steps (500 s) left
// of 10000; dividing by all 5000 steps done (the old ETA) said 100 s, 5x too short.
TEST(Schedule, TheEtaAfterAResumeCountsOnlyThisStartsSteps) {
  EXPECT_DOUBLE_EQ(RemainingSeconds(100, 4000, 5000, 10000), 500);
  EXPECT_DOUBLE_EQ(RemainingSeconds(100, 0, 1000, 10000), 900);
  EXPECT_DOUBLE_EQ(RemainingSeconds(0, 4000, 4000, 10000), 0);  // nothing run yet: no estimate
}

// The shipped K400 class map is the official one (400 names, the official order), and the K400
// configs point at it.
TEST(ClassMap, TheShippedK400MapNamesEveryClassInTheOfficialOrder) {
  const std::string src = EVL_SOURCE_DIR;
  const auto names = LoadClassNames(src + "/configs/k400_class_mappings.json", 400);
  ASSERT_EQ(names.size(), 400u);
  EXPECT_EQ(names.front(), "abseiling");
  EXPECT_EQ(names.back(), "zumba");
  // The whole list, in order: CRC-32C of the names joined by newlines, computed from the official
  // repository's data/k400_class_mappings.json (commit b282e8b, by a Python CRC-32C written apart
  // from evl's). Any reordering of the middle changes it.
  std::string joined;
  for (const auto& n : names) joined += (joined.empty() ? "" : "\n") + n;
  EXPECT_EQ(Crc32c(joined.data(), joined.size()), 0x671fdeb1u);
  EXPECT_THROW(LoadClassNames(src + "/configs/k400_class_mappings.json", 401), std::runtime_error);
  const EvlConfig k400 = LoadEffectiveConfig(src + "/configs/k400_vitb16_8f_dec4x768.pbtxt", {});
  EXPECT_EQ(k400.data().class_map(), "configs/k400_class_mappings.json");
}

// data.val_data_root: the validation list's own root; empty means data.data_root.
TEST(DatasetOptions, TheValidationListMayHaveItsOwnRoot) {
  EvlConfig c = LoadEffectiveConfig("", {"data.data_root=/train/root"});
  EXPECT_EQ(DatasetOptionsFromConfig(c, false).data_root, "/train/root");
  ApplyOverride(&c, "data.val_data_root=/val/root");
  EXPECT_EQ(DatasetOptionsFromConfig(c, true).data_root, "/train/root");
  EXPECT_EQ(DatasetOptionsFromConfig(c, false).data_root, "/val/root");
}

TEST(ResumeConfig, FieldsThatChangeTheMathAreReportedByDefault) {
  const EvlConfig base = Effective({});
  // The three the hand-kept list missed.
  for (const std::string set : {"data.auto_augment=rand-m7-n4-mstd0.5-inc1", "train.precision=BF16",
                                "data.train_list=/elsewhere/train.txt"}) {
    const auto diffs = ResumeConfigDifferences(base, Effective({set}));
    ASSERT_EQ(diffs.size(), 1u) << set;
    EXPECT_EQ(diffs[0].rfind(set.substr(0, set.find('=')) + ": ", 0), 0u) << diffs[0];
  }
  for (const std::string set : {"train.run_dir=/tmp/x", "train.threads=3", "eval.batch_size=2",
                                "data.num_workers=5", "slurm.time=1:00:00", "train.save_freq=7"})
    EXPECT_TRUE(ResumeConfigDifferences(base, Effective({set})).empty()) << set;
}

// Every scalar field not marked (resume_may_change) is compared: a field added tomorrow included.
TEST(ResumeConfig, EveryUnmarkedFieldIsCompared) {
  namespace pb = google::protobuf;
  const EvlConfig base = Effective({});
  int checked = 0;
  std::function<void(const pb::Descriptor*, const std::string&, std::vector<const pb::FieldDescriptor*>)> walk =
      [&](const pb::Descriptor* d, const std::string& prefix, std::vector<const pb::FieldDescriptor*> path) {
        for (int i = 0; i < d->field_count(); ++i) {
          const pb::FieldDescriptor* f = d->field(i);
          if (f->options().GetExtension(resume_may_change)) continue;
          auto p = path;
          p.push_back(f);
          if (f->cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE) {
            walk(f->message_type(), prefix + f->name() + ".", p);
            continue;
          }
          EvlConfig changed = base;
          pb::Message* m = &changed;
          for (size_t k = 0; k + 1 < p.size(); ++k) m = m->GetReflection()->MutableMessage(m, p[k]);
          const pb::Reflection* r = m->GetReflection();
          switch (f->cpp_type()) {
            case pb::FieldDescriptor::CPPTYPE_INT32:
              if (f->is_repeated()) r->AddInt32(m, f, 1); else r->SetInt32(m, f, r->GetInt32(*m, f) + 1);
              break;
            case pb::FieldDescriptor::CPPTYPE_INT64: r->SetInt64(m, f, r->GetInt64(*m, f) + 1); break;
            case pb::FieldDescriptor::CPPTYPE_FLOAT:
              if (f->is_repeated()) r->AddFloat(m, f, 0.5f); else r->SetFloat(m, f, r->GetFloat(*m, f) + 0.5f);
              break;
            case pb::FieldDescriptor::CPPTYPE_BOOL: r->SetBool(m, f, !r->GetBool(*m, f)); break;
            case pb::FieldDescriptor::CPPTYPE_STRING: r->SetString(m, f, r->GetString(*m, f) + "x"); break;
            case pb::FieldDescriptor::CPPTYPE_ENUM: {
              const auto* e = f->enum_type();
              const int now = r->GetEnumValue(*m, f);
              r->SetEnumValue(m, f, e->value(0)->number() == now ? e->value(1)->number() : e->value(0)->number());
              break;
            }
            default: ADD_FAILURE() << prefix + f->name() << ": a field type this test cannot change";
          }
          EXPECT_FALSE(ResumeConfigDifferences(base, changed).empty()) << prefix + f->name() << " is not compared";
          ++checked;
        }
      };
  walk(EvlConfig::descriptor(), "", {});
  EXPECT_GT(checked, 30);
}

TEST(Sbatch, TheJobIdIsTheLastLine) {
  EXPECT_EQ(ParseSbatchJobId("12345\n"), "12345");
  EXPECT_EQ(ParseSbatchJobId("12345;cluster\n"), "12345");
  EXPECT_EQ(ParseSbatchJobId("sbatch: warning: something\n678\n"), "678");
  EXPECT_EQ(ParseSbatchJobId("sbatch: warning\r\n91;c2\r\n\n"), "91");
  EXPECT_THROW(ParseSbatchJobId(""), std::runtime_error);
  EXPECT_THROW(ParseSbatchJobId("sbatch: error: invalid partition\n"), std::runtime_error);
}

CheckpointState TinyState(int64_t step) {
  CheckpointState s;
  s.step = step;
  s.tensors.emplace_back("model/w", torch::full({4}, static_cast<float>(step)));
  return s;
}

std::string Latest(const std::string& run) {
  std::ifstream in(run + "/checkpoints/latest");
  std::string name;
  in >> name;
  return name;
}

// Resumed from step 10 into a run directory that holds steps 20 and 30 (of an abandoned
// continuation): retention by step number deleted the file just written.
TEST(Retention, TheFileJustWrittenIsNeverDeleted) {
  const std::string run = ScratchDir("retention");
  for (int64_t step : {20, 30}) WriteCheckpointFile(CheckpointPath(run, step), TinyState(step));
  {
    AsyncCheckpointer c(run, /*keep_last=*/1);
    c.Save(TinyState(11));
    ASSERT_TRUE(c.Wait()) << c.LastError();
  }
  EXPECT_TRUE(fs::exists(CheckpointPath(run, 11)));
  EXPECT_EQ(Latest(run), "ckpt-00000011.evlckpt");
}

TEST(Retention, KeepsTheNewestKeepLastAndLatestNamesTheNewest) {
  const std::string run = ScratchDir("retention_keep");
  AsyncCheckpointer c(run, 2);
  for (int64_t step : {1, 2, 3, 4}) {
    c.Save(TinyState(step));
    ASSERT_TRUE(c.Wait());  // each written (a save behind a write in flight may be replaced)
  }
  EXPECT_EQ(ListCheckpoints(run), (std::vector<std::string>{CheckpointPath(run, 4), CheckpointPath(run, 3)}));
  EXPECT_EQ(Latest(run), "ckpt-00000004.evlckpt");
  EXPECT_FALSE(fs::exists(run + "/checkpoints/latest.tmp"));
}

TEST(Retention, LaterCheckpointsOfAnAbandonedContinuationAreSetAsideNotDeleted) {
  const std::string run = ScratchDir("set_aside");
  for (int64_t step : {10, 20, 30}) WriteCheckpointFile(CheckpointPath(run, step), TinyState(step));
  const auto moved = SetAsideCheckpointsAfter(run, 10);
  EXPECT_EQ(moved.size(), 2u);
  EXPECT_EQ(ListCheckpoints(run), std::vector<std::string>{CheckpointPath(run, 10)});
  EXPECT_TRUE(fs::exists(run + "/checkpoints/superseded-10/ckpt-00000030.evlckpt"));
  std::vector<std::string> skipped;
  EXPECT_EQ(FindNewestValidCheckpoint(run, &skipped), CheckpointPath(run, 10));
}

TEST(FileUtil, AFailedWriteLeavesTheOldFileAndNoTemporary) {
  const std::string dir = ScratchDir("atomic");
  const std::string path = dir + "/f.txt";
  WriteFileAtomically(path, "old\n");
  EXPECT_THROW(WriteFileAtomically(path, [](const ByteSink& sink) {
                 sink("new", 3);
                 throw std::runtime_error("producer failed");
               }),
               std::runtime_error);
  std::ifstream in(path);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(text, "old\n");
  int files = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir)) ++files;
  EXPECT_EQ(files, 1) << "a temporary file was left behind";
  EXPECT_THROW(WriteFileAtomically("/proc/no/such/dir/f", "x"), std::runtime_error);
}

// best.evlckpt used to be overwritten by the first evaluation after every resume: the best top-1
// was not in the checkpoint.
TEST(TrainState, TheBestTop1SurvivesACheckpoint) {
  EVLTransformer model(TinyEvlOptions());
  torch::optim::AdamW opt(model->parameters());
  TrainState saved{model, opt, nullptr, 87.5};
  const CheckpointState ck = Snapshot(saved, Effective({}), 10, 1, 1e-4);
  TrainState restored{model, opt, nullptr};
  Restore(ck, &restored, "test");
  EXPECT_EQ(restored.best_top1, 87.5);
  TrainState none{model, opt, nullptr};
  Restore(Snapshot(none, Effective({}), 10, 1, 1e-4), &restored, "test");
  EXPECT_EQ(restored.best_top1, -1) << "no evaluation yet";
}

// The reducer's hooks capture `this`: a parameter that outlives its reducer must not call into it.
// The first reducer here is destroyed armed (Prepare called, as a step that threw would leave it);
// had its hooks stayed, the backward below would launch its buckets through a dead object.
TEST(GradientReducer, ItsHooksGoWithIt) {
  auto w = torch::randn({8}, torch::requires_grad());
  LoneCommunicator first_comm, second_comm;
  auto first = std::make_unique<GradientReducer>(std::vector<at::Tensor>{w}, &first_comm, 1);
  first->Prepare();
  auto second = std::make_unique<GradientReducer>(std::vector<at::Tensor>{w}, &second_comm, 1);
  first.reset();
  second->Prepare();
  (w * w).sum().backward();
  second->Finish();
  EXPECT_EQ(second_comm.all_reduces, 1);
  EXPECT_EQ(first_comm.all_reduces, 0) << "the destroyed reducer's hook ran";
}

}  // namespace
}  // namespace evl::test
