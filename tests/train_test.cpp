// `evl train` end to end on real mpirun: rank-count invariance, rank disagreement, a dying rank,
// learning on the quick-start config, TensorBoard output.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <chrono>
#include <csignal>
#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <fstream>
#include <regex>
#include <set>
#include <thread>

#include "test_paths.h"
#include "config.h"
#include "evl/checkpoint_manager.h"
#include "evl/crc32c.h"
#include "evl/exit_status.h"
#include "evl/npy.h"
#include "evl/loss_scaler.h"
#include "evl/tensorboard.h"
#include "test_util.h"

namespace evl::test {
namespace {

const std::string kEvl = EVL_BIN;
const std::string kMpirun = std::string(MPIEXEC) + " --allow-run-as-root --oversubscribe --bind-to none ";
const std::string kSrc = EVL_SOURCE_DIR;

std::string SharedData() { return SharedSynthData(kEvl); }

std::string SmallRun(const std::string& dir) {
  return SharedData() + " --set train.num_steps=12 --set train.batch_size=8 --set train.threads=1 --set train.eval_freq=0"
         " --set train.print_freq=4 --set data.synthetic.videos=24 --set data.num_workers=1"
         " --set train.run_dir=" + dir;
}

double LastEvalTop1(const std::string& dir) {
  const auto evals = ReadMetrics(dir, "eval_step");
  return evals.empty() ? -1 : evals.back()["top1"].get<double>();
}

// Inputs divided by a tiny std overflow and make every loss NaN: those steps are skipped (nothing applied), the
// run stops after train.nonfinite_patience of them with exit status 3, metrics.jsonl stays valid
// JSON, and no checkpoint holds a NaN. A learning rate that overflows the parameters in one update
// stops the run at once, before anything of it is saved.
TEST(Train, ADivergedRunStopsWithoutSavingNonFiniteState) {
  const std::string d = ScratchDir("train_diverged");
  auto r = RunCommand(kEvl + " train" + SmallRun(d) +
                      " --set data.std=1e-38,1e-38,1e-38 --set train.num_steps=60 --set train.save_freq=1 --set train.keep_last=100"
                      " --set train.nonfinite_patience=3");
  EXPECT_EQ(r.status, 3) << r.output;
  EXPECT_NE(r.output.find("training diverged: 3 steps in a row"), std::string::npos) << r.output;
  const auto steps = ReadMetrics(d);  // parses every line: NaN must not be written as a bare token
  EXPECT_EQ(steps.size(), 3u);
  for (const auto& j : steps) EXPECT_TRUE(j["loss"].is_null()) << j.dump();
  const std::string big = ScratchDir("train_overflow");
  auto o = RunCommand(kEvl + " train" + SmallRun(big) + " --set train.lr=1e30 --set train.save_freq=1");
  EXPECT_EQ(o.status, 3) << o.output;
  EXPECT_NE(o.output.find("made parameters NaN/Inf"), std::string::npos) << o.output;
  EXPECT_TRUE(ListCheckpoints(big).empty()) << "the overflowing step was saved";
  int checked = 0;
  for (const auto& path : ListCheckpoints(d)) {
    const CheckpointState s = ReadCheckpointFile(path);
    for (const auto& [name, t] : s.tensors)
      EXPECT_TRUE(t.isfinite().all().item<bool>()) << name << " in " << path;
    ++checked;
  }
  EXPECT_GT(checked, 0);
}

// Fine-tuning to another class count (MMAction2's load_from): everything loads but the head, which
// is named in a warning and left as initialised.
TEST(Train, InitFromACheckpointWithAnotherClassCountLoadsAllButTheHead) {
  const std::string src = ScratchDir("finetune_src"), dst = ScratchDir("finetune_dst");
  auto first = RunCommand(kEvl + " train" + SmallRun(src) + " --set model.num_classes=5 --set train.num_steps=2");
  ASSERT_EQ(first.status, 0) << first.output;
  auto tuned = RunCommand(kEvl + " train" + SmallRun(dst) + " --set train.num_steps=1 --init-from " +
                          CheckpointPath(src, 2));
  ASSERT_EQ(tuned.status, 0) << tuned.output;
  EXPECT_NE(tuned.output.find("--init-from: not loading proj.2.weight [5, 64] -> [4, 64]"), std::string::npos)
      << tuned.output;
  EXPECT_NE(tuned.output.find("not loading proj.2.bias [5] -> [4]"), std::string::npos) << tuned.output;
  EXPECT_EQ(tuned.output.find("not loading proj.0"), std::string::npos) << tuned.output;
}

// RUN_DIR holds what a run was (effective config, versions with the commit, command lines, rank 0's
// log) and belongs to one job at a time: while another holds it, both ranks refuse with exit 2.
TEST(Train, TheRunDirectoryIsTheRecordAndBelongsToOneJob) {
  const std::string d = ScratchDir("train_record");
  {
    const int fd = open((d + "/.lock").c_str(), O_RDWR | O_CREAT, 0644);
    ASSERT_GE(fd, 0);
    const std::string who = "host other-node, pid 4242\n";
    ASSERT_EQ(write(fd, who.data(), who.size()), static_cast<ssize_t>(who.size()));
    ASSERT_EQ(flock(fd, LOCK_EX | LOCK_NB), 0);
    auto busy = RunCommand(kMpirun + "-np 2 " + kEvl + " train" + SmallRun(d));
    close(fd);
    EXPECT_EQ(busy.status, 2) << busy.output;
    EXPECT_NE(busy.output.find("is in use by another job (host other-node, pid 4242)"), std::string::npos)
        << busy.output;
    EXPECT_EQ(busy.output.find("MPI_ABORT"), std::string::npos) << busy.output;
    EXPECT_FALSE(std::ifstream(d + "/metrics.jsonl").good()) << "trained although refused";
  }
  auto r = RunCommand(kEvl + " train" + SmallRun(d));
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(ReadFile(d + "/config.pbtxt").find("num_steps: 12"), std::string::npos);
  EXPECT_NE(ReadFile(d + "/info.txt").find("commit "), std::string::npos);
  EXPECT_NE(ReadFile(d + "/commands.txt").find(" train --set data.train_list="), std::string::npos) << ReadFile(d + "/commands.txt");
  EXPECT_NE(ReadFile(d + "/logs/rank0.log").find("step 12/12"), std::string::npos);
  // The end-of-run summary: steps, time, the final and the best evaluation with their steps.
  EXPECT_TRUE(std::regex_search(r.output, std::regex("summary: steps 1-12 of 12 in [0-9:]+ \\([0-9.]+ clips/s\\), "
                                                     "[0-9:]+ of training in all; final eval top1 [0-9.]+ after step 12; "
                                                     "best top1 [0-9.]+ after step 12")))
      << r.output;
  EXPECT_NE(ReadFile(d + "/.lock").find("pid "), std::string::npos) << "the last owner is named";
}

TEST(Train, RankCountInvariance) {
  const std::string d1 = ScratchDir("train_np1"), d2 = ScratchDir("train_np2");
  auto r1 = RunCommand(kEvl + " train" + SmallRun(d1));
  ASSERT_EQ(r1.status, 0) << r1.output;
  auto r2 = RunCommand(kMpirun + "-np 2 " + kEvl + " train" + SmallRun(d2));
  ASSERT_EQ(r2.status, 0) << r2.output;
  { std::ofstream(d1 + "/log.txt") << r1.output; std::ofstream(d2 + "/log.txt") << r2.output; }
  auto l1 = StepLosses(d1), l2 = StepLosses(d2);
  ASSERT_EQ(l1.size(), 12u);
  ASSERT_EQ(l2.size(), 12u);
  for (size_t i = 0; i < l1.size(); ++i)
    EXPECT_NEAR(l1[i], l2[i], 1e-5 * std::abs(l1[i])) << "step " << i;
  auto p1 = ReadNpy(d1 + "/final_params.npy"), p2 = ReadNpy(d2 + "/final_params.npy");
  ASSERT_EQ(p1.sizes(), p2.sizes());
  const double scale = p1.abs().max().item<double>();
  std::ifstream index(d1 + "/final_params.txt");
  std::string name;
  int64_t offset, numel, checked = 0;
  while (index >> name >> offset >> numel) {
    const double diff = (p1.narrow(0, offset, numel) - p2.narrow(0, offset, numel)).abs().max().item<double>();
    if (name.find("attn.k_proj.bias") != std::string::npos) {
      // Softmax ignores a shift shared by all keys, so this gradient is exactly zero in exact
      // arithmetic; AdamW turns its rounding noise into steps of up to lr. Bound that, no more.
      EXPECT_LE(diff, 12 * 2 * 1e-3) << name;
    } else {
      EXPECT_LE(diff / scale, 1e-5) << name;
    }
    checked += numel;
  }
  EXPECT_EQ(checked, p1.numel());
  // ... and training moved the parameters at all: against the same run whose updates are
  // negligible (lr 1e-30), i.e. the initial parameters. (Comparing the first and last step's
  // losses, as this once did, passed with an optimizer that did nothing: other batches, other
  // losses.) AdamW moves a parameter by up to lr per step.
  const std::string d0 = ScratchDir("train_np1_still");
  auto r0 = RunCommand(kEvl + " train" + SmallRun(d0) + " --set train.lr=1e-30");
  ASSERT_EQ(r0.status, 0) << r0.output;
  const auto p0 = ReadNpy(d0 + "/final_params.npy");
  const double lr = LoadEffectiveConfig("", {}).train().lr();
  EXPECT_GT((p1 - p0).abs().max().item<double>(), lr) << "the optimizer did not move the parameters";
}

TEST(Train, RanksThatDisagreeAreReported) {
  const std::string d = ScratchDir("train_mismatch");
  auto r = RunCommand(kMpirun + "-np 1 " + kEvl + " train" + SmallRun(d) + " : -np 1 " + kEvl + " train" +
                      SmallRun(d) + " --set train.lr=0.5");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("first difference"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("lr: 0.5"), std::string::npos) << r.output;
}

TEST(Train, DyingRankEndsTheJobNonZero) {
  const std::string d = ScratchDir("train_death");
  const auto t0 = std::chrono::steady_clock::now();
  auto r = RunCommand(kMpirun + "-np 1 " + kEvl + " train" + SmallRun(d) + " --set train.num_steps=100000 : -np 1 -x "
                      "EVL_TEST_EXIT_AT_STEP=3 " + kEvl + " train" + SmallRun(d) + " --set train.num_steps=100000");
  EXPECT_NE(r.status, 0) << r.output;
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 60.0);
}

TEST(Train, StalledRankIsNamedAndTheJobAborts) {
  const std::string d = ScratchDir("train_stall");
  const auto t0 = std::chrono::steady_clock::now();
  auto r = RunCommand("EVL_TEST_STALL_AT_STEP=3 EVL_TEST_STALL_RANK=1 " + kEvl + " launch -n 2 -- train" + SmallRun(d) +
                      " --set train.num_steps=100000 --set dist.stall_timeout_s=4");
  EXPECT_NE(r.status, 0) << r.output;
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 60.0);
  // Rank 0 waited in step 3's first collective; rank 1 was last seen in step 2's.
  EXPECT_NE(r.output.find("ranks not arrived: 1 (last at #"), std::string::npos) << r.output;
}

TEST(LossScaler, SkipsOverflowBacksOffAndGrows) {
  DynamicLossScaler scaler(1024.0, 2.0, 0.5, 3);
  auto p = torch::zeros({4}, torch::requires_grad());
  p.mutable_grad() = torch::full({4}, 2048.0);
  EXPECT_FALSE(scaler.UnscaleAndCheck({p}));
  EXPECT_TRUE(torch::equal(p.grad(), torch::full({4}, 2.0)));  // unscaled in place
  scaler.Update(false);
  p.mutable_grad() = torch::tensor({1.0f, std::numeric_limits<float>::infinity(), 0.0f, 0.0f});
  EXPECT_TRUE(scaler.UnscaleAndCheck({p}));
  scaler.Update(true);
  EXPECT_EQ(scaler.scale(), 512.0);
  EXPECT_EQ(scaler.good_steps(), 0);
  p.mutable_grad() = torch::tensor({std::nanf(""), 0.0f, 0.0f, 0.0f});
  EXPECT_TRUE(scaler.UnscaleAndCheck({p}));
  for (int i = 0; i < 3; ++i) scaler.Update(false);
  EXPECT_EQ(scaler.scale(), 1024.0);  // grows after growth_interval good steps
  scaler.Restore(8.0, 2);
  scaler.Update(false);
  EXPECT_EQ(scaler.scale(), 16.0);
}

TEST(Train, Bf16DecoderTracksFp32AndLearns) {
  const std::string d32 = ScratchDir("train_fp32"), d16 = ScratchDir("train_bf16");
  const std::string args = " --set train.num_steps=60 --set train.print_freq=20 --set model.decoder.mlp_dropout=0"
                           " --set model.cls_dropout=0";
  auto r32 = RunCommand(kEvl + " train" + SmallRun(d32) + args);
  ASSERT_EQ(r32.status, 0) << r32.output;
  auto r16 = RunCommand(kEvl + " train" + SmallRun(d16) + args + " --set train.precision=BF16");
  ASSERT_EQ(r16.status, 0) << r16.output;
  const auto l32 = StepLosses(d32), l16 = StepLosses(d16);
  ASSERT_EQ(l16.size(), 60u);
  // The first step sees the same weights: only BF16 rounding separates the losses.
  EXPECT_NEAR(l16[0], l32[0], 0.02 * l32[0]);
  EXPECT_NE(l16[0], l32[0]) << "BF16 autocast had no effect";
  // 60 steps later it still follows the FP32 run, which learns.
  double first = 0, last = 0, last32 = 0;
  for (int i = 0; i < 10; ++i) first += l16[i] / 10, last += l16[50 + i] / 10, last32 += l32[50 + i] / 10;
  EXPECT_LT(last, first) << "BF16 loss " << first << " -> " << last;
  EXPECT_NEAR(last, last32, 0.02 * last32);
}

TEST(Train, QuickstartLearnsAndWritesTensorBoard) {
  const std::string d = ScratchDir("train_quickstart");
  auto r = RunCommand(kEvl + " launch -n 2 -- train --config " + kSrc + "/configs/quickstart.pbtxt" +
                      " --set train.num_steps=250 --set train.eval_freq=250 --set train.run_dir=" + d);
  ASSERT_EQ(r.status, 0) << r.output;
  const double top1 = LastEvalTop1(d);
  EXPECT_GE(top1, 80.0) << "held-out top-1 after 250 steps (chance is 25%)\n" << r.output;
  std::string events;
  DIR* dir = opendir(d.c_str());
  ASSERT_NE(dir, nullptr);
  while (dirent* e = readdir(dir))
    if (std::string(e->d_name).rfind("events.out.tfevents.", 0) == 0) events = d + "/" + e->d_name;
  closedir(dir);
  ASSERT_FALSE(events.empty());
  auto scalars = ReadTensorBoardScalars(events);
  int losses = 0;
  float eval_top1 = -1;
  int64_t eval_step = -1, first_loss_step = -1;
  std::set<std::string> tags;
  for (const auto& s : scalars) {
    tags.insert(s.tag);
    if (s.tag == "train/loss" && ++losses == 1) first_loss_step = s.step;
    if (s.tag == "eval/top1") eval_top1 = s.value, eval_step = s.step;
  }
  EXPECT_EQ(losses, 250);
  EXPECT_NEAR(eval_top1, top1, 0.01);
  // One step numbering: the console's "step 1/250" is metrics.jsonl's step 1 and TensorBoard's step 1;
  // the evaluation after 250 steps is at 250 everywhere.
  EXPECT_EQ(first_loss_step, 1);
  EXPECT_EQ(eval_step, 250);
  EXPECT_EQ(ReadMetrics(d).front()["step"], 1);
  EXPECT_EQ(ReadMetrics(d, "eval_step").back()["eval_step"], 250);
  for (const char* tag : {"train/top5", "train/data_wait", "train/comm_wait", "train/grad_norm", "memory/host_peak_mib",
                          "eval/mean_class_top1", "eval/top5"})
    EXPECT_TRUE(tags.count(tag)) << tag << " missing";
}

// Every flock failure used to read "in use by another job": on Lustre without `-o flock` (ENOSYS)
// or NFS without a lock manager (ENOLCK) no run could start. Only EWOULDBLOCK means another job.
TEST(Train, ARunStartsWhereTheFilesystemHasNoFlock) {
  const std::string d = ScratchDir("train_no_flock");
  auto r = RunCommand("EVL_TEST_LOCK_FAILS=flock " + kEvl + " train" + SmallRun(d) + " --set train.num_steps=2");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("flock failed (No locks available"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("locked with a POSIX record lock instead"), std::string::npos) << r.output;
  // No lock at all: a marker file stands for it, is removed at the end, and refuses a second job.
  const std::string none = ScratchDir("train_no_locks");
  auto m = RunCommand("EVL_TEST_LOCK_FAILS=all " + kEvl + " train" + SmallRun(none) + " --set train.num_steps=2");
  ASSERT_EQ(m.status, 0) << m.output;
  EXPECT_NE(m.output.find("no lock works on this filesystem"), std::string::npos) << m.output;
  EXPECT_FALSE(std::ifstream(none + "/.lock.held").good()) << "the marker outlived its job";
  std::ofstream(none + "/.lock.held") << "host other-node, pid 4242\n";
  auto busy = RunCommand("EVL_TEST_LOCK_FAILS=all " + kEvl + " train" + SmallRun(none) + " --set train.num_steps=2");
  EXPECT_EQ(busy.status, 2) << busy.output;
  EXPECT_NE(busy.output.find("in use by another job (host other-node, pid 4242)"), std::string::npos) << busy.output;
  EXPECT_NE(busy.output.find("delete " + none + "/.lock.held"), std::string::npos) << busy.output;
  // A marker whose job was killed (SIGKILL never runs the code that removes it) used to refuse
  // every restart. One naming a pid of this host that no longer exists is taken over; one naming
  // a live pid here is not (it may be the job).
  char host[256] = {};
  gethostname(host, sizeof host - 1);
  const std::string dead_pid = RunCommand("sh -c 'echo $$'").output;  // that shell has exited
  std::ofstream(none + "/.lock.held") << "host " << host << ", pid " << std::stol(dead_pid) << ", since then\n";
  auto stale = RunCommand("EVL_TEST_LOCK_FAILS=all " + kEvl + " train" + SmallRun(none) + " --set train.num_steps=2");
  EXPECT_EQ(stale.status, 0) << stale.output;
  EXPECT_NE(stale.output.find("no longer exists on " + std::string(host) + "; taking it over"), std::string::npos)
      << stale.output;
  std::ofstream(none + "/.lock.held") << "host " << host << ", pid " << getpid() << ", since now\n";
  auto live = RunCommand("EVL_TEST_LOCK_FAILS=all " + kEvl + " train" + SmallRun(none) + " --set train.num_steps=2");
  EXPECT_EQ(live.status, 2) << live.output;
  EXPECT_NE(live.output.find("in use by another job (host " + std::string(host) + ", pid " + std::to_string(getpid())),
            std::string::npos) << live.output;
  // A requeue of the same Slurm job (on any node) restarts only after its previous run ended.
  std::ofstream(none + "/.lock.held") << "host other-node, pid 4242, since then, Slurm job 77\n";
  auto requeued = RunCommand("SLURM_JOB_ID=77 EVL_TEST_LOCK_FAILS=all " + kEvl + " train" + SmallRun(none) +
                             " --set train.num_steps=2");
  EXPECT_EQ(requeued.status, 0) << requeued.output;
  EXPECT_NE(requeued.output.find("an earlier run of this same Slurm job (77)"), std::string::npos) << requeued.output;
  std::remove((none + "/.lock.held").c_str());
}

// A rank that fails with a known status: that status comes out of mpirun and evl launch. (A bad
// --set, as this test once used, is refused by launch's own preflight before mpirun starts.)
TEST(Launch, ForwardsFailureExitStatus) {
  const std::string d = ScratchDir("launch_status");
  auto r = RunCommand("EVL_TEST_EXIT_AT_STEP=3 " + kEvl + " launch -n 2 -- train" + SmallRun(d));
  EXPECT_EQ(r.status, kExitTestCrash) << r.output;
  EXPECT_NE(r.output.find("EVL_TEST_EXIT_AT_STEP: exiting at step 3"), std::string::npos) << r.output;
}

// SIGUSR1 (Slurm's time-limit warning) used to kill `evl launch` with status 138, leaving mpirun
// and the ranks training on, orphaned. It is a stop request like SIGTERM.
TEST(Launch, Sigusr1IsAStopRequestToo) {
  const std::string d = ScratchDir("launch_sigusr1");
  auto r = RunCommand("EVL_TEST_SIGNAL_LAUNCH_AT_STEP=4:USR1 " + kEvl + " launch -n 2 -- train" + SmallRun(d) +
                      " --set train.num_steps=100000");
  EXPECT_EQ(r.status, kExitPreempted) << r.output;
  // The signal travels rank 0 -> evl launch -> mpirun -> the ranks: which step it meets is a race.
  EXPECT_NE(r.output.find("stop signal: checkpoint saved at step"), std::string::npos) << r.output;
  EXPECT_FALSE(ListCheckpoints(d).empty()) << r.output;
}

// Ctrl-C at a terminal sends SIGINT to the foreground job's whole process group, and a dropped ssh
// session SIGHUP. mpirun shared evl launch's group: it got the signal itself and killed the ranks
// within ~2 s, before they could save (every step since the last checkpoint lost), and SIGHUP
// killed evl launch too. mpirun now runs in a process group of its own and evl launch takes either
// signal as a stop request: the ranks save the step they reached and the job exits 75.
TEST(Launch, CtrlCOrAHangUpAtTheTerminalSavesTheStepReached) {
  for (const std::string sig : {"INT", "HUP"}) {
    const std::string d = ScratchDir("launch_group_" + sig);
    // setsid --wait: evl launch leads a process group of its own, as a shell's foreground job does.
    auto r = RunCommand("EVL_TEST_SIGNAL_LAUNCH_AT_STEP=4:GROUP-" + sig + " setsid --wait " + kEvl +
                        " launch -n 2 -- train" + SmallRun(d) + " --set train.num_steps=100000");
    EXPECT_EQ(r.status, kExitPreempted) << "SIG" << sig << "\n" << r.output;
    EXPECT_NE(r.output.find("stop signal: checkpoint saved at step"), std::string::npos) << "SIG" << sig << "\n" << r.output;
    EXPECT_FALSE(ListCheckpoints(d).empty()) << "SIG" << sig;
  }
}

// A stop request while evl launch ran its preflight (before it installed its handlers) killed it
// with SIGUSR1's default action, status 138. It is a stop like any other: nothing has started, so
// nothing is saved, and the status says to resume.
TEST(Launch, AStopDuringThePreflightStartsNothingAndSaysResume) {
  const std::string d = ScratchDir("launch_preflight_stop");
  auto r = RunCommand("EVL_TEST_SIGNAL_AT=preflight " + kEvl + " launch -n 2 -- train" + SmallRun(d));
  EXPECT_EQ(r.status, kExitPreempted) << r.output;
  EXPECT_NE(r.output.find("stop requested during the preflight; nothing was started"), std::string::npos) << r.output;
  EXPECT_FALSE(std::ifstream(d + "/metrics.jsonl").good()) << "the job started after the stop request";
}

// Processes whose command line names `needle` (not the shell that runs pgrep: "[x]yz" matches
// "xyz" but not itself).
int ProcessesNaming(const std::string& needle) {
  return std::stoi(RunCommand("pgrep -f -c -- '[" + needle.substr(0, 1) + "]" + needle.substr(1) + "' || true").output);
}

// An `evl launch` that dies (SIGKILL here) takes its job with it: mpirun has SIGTERM as its
// parent-death signal. Before, the ranks trained on under init, holding the run directory.
TEST(Launch, ItsJobDoesNotOutliveIt) {
  const std::string d = ScratchDir("launch_killed");
  // Quiet ranks: with output to forward, mpirun would die of SIGPIPE on its next write anyway; a job
  // that has nothing to say for a while (print_freq, GLOG_minloglevel) is what was left running.
  // Output to a file: the test's own pipe must not be held open by the processes it checks for.
  auto r = RunCommand("GLOG_minloglevel=2 EVL_TEST_SIGNAL_LAUNCH_AT_STEP=3:KILL " + kEvl + " launch -n 2 -- train" +
                      SmallRun(d) + " --set train.num_steps=100000 --set train.print_freq=100000 > " + d +
                      "/log.txt 2>&1; echo \"status $?\"");
  EXPECT_NE(r.output.find("status " + std::to_string(128 + SIGKILL)), std::string::npos) << r.output << ReadFile(d + "/log.txt");
  // mpirun and the ranks end on their own; this bounds how long the test waits for them.
  int left = 0;
  for (int i = 0; i < 600 && (left = ProcessesNaming("train.run_dir=" + d)) > 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(left, 0) << "mpirun or ranks still running 60 s after evl launch died";
  RunCommand("pkill -9 -f -- 'train.run_dir=" + d + "' || true");
}

// SIGTERM to `evl launch` used to reach mpirun, which SIGKILLed the ranks ~2 s later (cutting a slow
// checkpoint write off) and returned 1. The ranks now get the stop request, save, and their status
// (75) comes back.
TEST(Launch, SigtermLetsTheRanksSaveAndReturnsTheirStatus) {
  const std::string d = ScratchDir("launch_sigterm");
  const std::string cmd = "EVL_TEST_SLOW_CHECKPOINT_MS=30 " + kEvl + " launch -n 2 -- train" + SmallRun(d) +
                          " --set train.num_steps=100000 --set train.print_freq=2 > " + d + "/log.txt 2>&1 & pid=$!; "
                          "for i in $(seq 1 1200); do grep -q 'step 4/' " + d + "/log.txt && break; sleep 0.1; done; "
                          "kill -TERM $pid; wait $pid; echo \"status $?\"";
  auto r = RunCommand(cmd);
  std::ifstream in(d + "/log.txt");
  const std::string log((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_NE(r.output.find("status 75"), std::string::npos) << r.output << log;
  EXPECT_NE(log.find("stop signal: checkpoint saved"), std::string::npos) << log;
  EXPECT_FALSE(ListCheckpoints(d).empty()) << log;
}

// Opens of the files `paths` while `command` runs, counted by the kernel (inotify) whichever
// process opens them. Opens that are simultaneous may be counted as one (inotify merges identical
// successive events): a count is exact when the opens happen one after another.
std::vector<int> OpensDuring(const std::string& command, const std::vector<std::string>& paths, CommandResult* r) {
  const int fd = inotify_init1(IN_NONBLOCK);
  EXPECT_GE(fd, 0);
  std::vector<int> watches, opens(paths.size(), 0);
  // Reads and closes between one process's open and the next keep sequential opens apart.
  for (const auto& p : paths) watches.push_back(inotify_add_watch(fd, p.c_str(), IN_OPEN | IN_ACCESS | IN_CLOSE_NOWRITE));
  *r = RunCommand(command);
  alignas(inotify_event) char buf[1 << 16];
  for (ssize_t n; (n = read(fd, buf, sizeof buf)) > 0;)
    for (char* at = buf; at < buf + n; at += sizeof(inotify_event) + reinterpret_cast<inotify_event*>(at)->len) {
      const auto* e = reinterpret_cast<inotify_event*>(at);
      EXPECT_FALSE(e->mask & IN_Q_OVERFLOW) << "inotify queue overflowed";
      for (size_t k = 0; k < paths.size(); ++k) opens[k] += e->wd == watches[k] && (e->mask & IN_OPEN);
    }
  close(fd);
  return opens;
}

// Every rank used to read both lists in its own preflight and again for its dataset, and the val
// list again at every evaluation: at 512 ranks and Kinetics' lists, ~15 GB read from shared
// storage at once. Now `evl launch` checks them once, and in the job rank 0 alone reads them and
// broadcasts them. (Before: train 1 + 2 + 2 opens, val 1 + 2 + 2 x 3 evaluations.)
TEST(Launch, TheListsAreReadOncePerJobNotOncePerRankOrEvaluation) {
  const std::string d = ScratchDir("launch_lists_once");
  std::smatch root;
  const std::string data = SharedData();
  ASSERT_TRUE(std::regex_search(data, root, std::regex("data_root=(\\S+)")));
  RunCommand("cp " + root[1].str() + "/train.txt " + root[1].str() + "/val.txt " + d);
  const std::string lists = data + " --set data.train_list=" + d + "/train.txt --set data.val_list=" + d + "/val.txt";
  CommandResult r;
  const auto opens = OpensDuring(kEvl + " launch -n 2 -- train" + SmallRun(d + "/run") + lists + " --set train.eval_freq=4",
                                 {d + "/train.txt", d + "/val.txt"}, &r);
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(ReadMetrics(d + "/run", "eval_step").size(), 3u) << r.output;
  EXPECT_EQ(opens, (std::vector<int>{2, 2})) << "opens of train.txt, val.txt: evl launch's check, then rank 0";

  // A bad line the ranks' own preflight no longer reads (mpirun without evl launch, as `srun` in a
  // job script): rank 0 finds it, every rank stops with status 2, the job reports it once.
  RunCommand("echo 'broken.mp4 x' >> " + d + "/val.txt");
  auto bad = RunCommand(kMpirun + "-np 2 " + kEvl + " train" + SmallRun(d + "/bad") + lists);
  EXPECT_EQ(bad.status, kExitUsage) << bad.output;
  const std::string problem = "data.val_list: " + d + "/val.txt:";
  EXPECT_NE(bad.output.find(problem), std::string::npos) << bad.output;
  EXPECT_EQ(bad.output.find(problem), bad.output.rfind(problem)) << "reported by more than one rank:\n" << bad.output;
  EXPECT_TRUE(ListCheckpoints(d + "/bad").empty()) << bad.output;
}

TEST(Tensorboard, AZeroValueIsWrittenAndReadBack) {
  const std::string d = ScratchDir("tb_zero");
  std::string path;
  {
    TensorBoardWriter tb(d);
    tb.AddScalar("eval/top1", 0.0f, 3);
    tb.AddScalar("train/loss", 1.5f, 3);
    tb.Flush();
    path = tb.path();
  }
  // On the wire: field 2 (simple_value, fixed32) with four zero bytes, as TensorBoard needs it.
  std::ifstream in(path, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_NE(bytes.find(std::string("eval/top1") + std::string("\x15\0\0\0\0", 5)), std::string::npos);
  const auto scalars = ReadTensorBoardScalars(path);
  ASSERT_EQ(scalars.size(), 2u);
  EXPECT_EQ(scalars[0].tag, "eval/top1");
  EXPECT_EQ(scalars[0].value, 0.0f);
  EXPECT_EQ(scalars[0].step, 3);
}

TEST(Tensorboard, Crc32cKnownValue) {
  // RFC 3720 test vector: 32 bytes of zeros.
  std::string zeros(32, '\0');
  EXPECT_EQ(Crc32c(zeros.data(), zeros.size()), 0x8A9136AAu);
  EXPECT_EQ(Crc32c("123456789", 9), 0xE3069283u);
  EXPECT_EQ(Crc32cExtendPortable(0, "123456789", 9), 0xE3069283u);
  // Hardware and table versions agree on every length and alignment, and extending composes.
  std::string bytes(300, '\0');
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<char>(i * 131 + 7);
  for (size_t start = 0; start < 9; ++start)
    for (size_t len = 0; start + len <= bytes.size(); len += 13) {
      const char* p = bytes.data() + start;
      ASSERT_EQ(Crc32c(p, len), Crc32cExtendPortable(0, p, len)) << start << " " << len;
      ASSERT_EQ(Crc32cExtend(Crc32c(p, len / 3), p + len / 3, len - len / 3), Crc32c(p, len));
    }
}

}  // namespace
}  // namespace evl::test
