// `evl submit` on a real single-node Slurm cluster (Debian's slurmctld/slurmd/munge), started by this
// test process with tests/slurm/cluster.sh and stopped by PID: a trained-then-evaluated job, a job
// that Slurm's time-limit signal checkpoints, requeues and resumes to the same parameters as an
// uninterrupted run, the requeue limit, and the dry-run script passing `sbatch --test-only`.
#include <gtest/gtest.h>

#include <stdlib.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>
#include <thread>

#include "test_paths.h"
#include "test_util.h"

namespace evl::test {
namespace {

const std::string kEvl = EVL_BIN;
const std::string kSrc = EVL_SOURCE_DIR;
const std::string kMpirun = std::string(MPIEXEC) + " --allow-run-as-root --oversubscribe --bind-to none ";


class Slurm : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    char tmpl[] = "/tmp/evl-slurm-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    cluster_ = tmpl;
    auto r = RunCommand(kSrc + "/tests/slurm/cluster.sh start " + cluster_);
    ASSERT_EQ(r.status, 0) << r.output;
    setenv("SLURM_CONF", (cluster_ + "/slurm.conf").c_str(), 1);
  }
  static void TearDownTestSuite() {
    if (cluster_.empty()) return;
    RunCommand("ids=$(squeue -h -o %i); [ -z \"$ids\" ] || scancel $ids; sleep 1");
    RunCommand(kSrc + "/tests/slurm/cluster.sh stop " + cluster_);
    RunCommand("rm -rf " + cluster_);
  }

  // Fields of `scontrol show job -o ID` (JobState, Restarts, ExitCode, ...).
  static std::map<std::string, std::string> Job(const std::string& id) {
    std::map<std::string, std::string> fields;
    std::istringstream in(RunCommand("scontrol show job -o " + id).output);
    for (std::string word; in >> word;) {
      const size_t eq = word.find('=');
      if (eq != std::string::npos) fields[word.substr(0, eq)] = word.substr(eq + 1);
    }
    return fields;
  }

  // Polls until the job ends; returns its final fields.
  static std::map<std::string, std::string> WaitForJob(const std::string& id, int timeout_s) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_s);
    std::map<std::string, std::string> job;
    while (std::chrono::steady_clock::now() < deadline) {
      job = Job(id);
      const std::string state = job["JobState"];
      if (state == "COMPLETED" || state == "FAILED" || state == "CANCELLED" || state == "TIMEOUT" ||
          state == "NODE_FAIL" || state == "OUT_OF_MEMORY" || state == "BOOT_FAIL" || state == "DEADLINE")
        return job;
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
    }
    ADD_FAILURE() << "job " << id << " still " << job["JobState"] << " after " << timeout_s << " s";
    RunCommand("scancel " + id);
    return job;
  }

  // Job ids from `evl submit` output, in submission order.
  static std::vector<std::string> JobIds(const std::string& output) {
    std::vector<std::string> ids;
    std::regex re("submitted \\w+ job (\\d+)");
    for (std::sregex_iterator it(output.begin(), output.end(), re), end; it != end; ++it) ids.push_back((*it)[1]);
    return ids;
  }

  struct Finished {
    std::string id;
    std::map<std::string, std::string> job;
    std::string log;
  };
  // Submits one training job (`env` before the command) and waits for it to end.
  static Finished SubmitAndWait(const std::string& env, const std::string& args, const std::string& run_dir,
                                int timeout_s) {
    Finished f;
    auto r = RunCommand(env + " " + kEvl + " submit " + args);
    EXPECT_EQ(r.status, 0) << r.output;
    const auto ids = JobIds(r.output);
    EXPECT_EQ(ids.size(), 1u) << r.output;
    if (ids.size() != 1) return f;
    f.id = ids[0];
    f.job = WaitForJob(f.id, timeout_s);
    f.log = ReadFile(run_dir + "/slurm/train-" + f.id + ".out");
    return f;
  }

  // A short quick-start run on the shared synthetic dataset; 2 tasks, 1 thread each.
  static std::string Config(const std::string& run_dir, int steps) {
    return SharedSynthData(kEvl) + " --set train.num_steps=" + std::to_string(steps) +
           " --set train.threads=1 --set train.eval_freq=0 --set train.print_freq=20 --set train.run_dir=" + run_dir;
  }

  static inline std::string cluster_;
};

TEST_F(Slurm, DryRunIsAValidSbatchScript) {
  const std::string dir = ScratchDir("slurm_dry");
  auto r = RunCommand(kEvl + " submit --nodes 1 --tasks-per-node 2 --time 30 --dry-run" + Config(dir, 10) +
                      " -- --comment evl-test --exclusive > " + dir + "/dry.sbatch");
  ASSERT_EQ(r.status, 0) << r.output;
  const std::string script = ReadFile(dir + "/dry.sbatch");
  for (const char* want : {"#SBATCH --ntasks-per-node=2", "#SBATCH --time=30", "#SBATCH --signal=USR1@300",
                           "#SBATCH --requeue", "#SBATCH --comment=evl-test", "#SBATCH --exclusive",
                           "srun --mpi=pmix --kill-on-bad-exit=1", " train --config "})
    EXPECT_NE(script.find(want), std::string::npos) << want << " missing from\n" << script;
  auto t = RunCommand("sbatch --test-only " + dir + "/dry.sbatch");
  EXPECT_EQ(t.status, 0) << t.output;
  EXPECT_NE(t.output.find("to start at"), std::string::npos) << t.output;
  // A typo in a user's template names the placeholder and its line.
  std::ofstream(dir + "/bad.sbatch.in") << "#!/bin/bash\n#SBATCH --nodes={{NODES}}\n{{NODE_COUNT}}\n";
  auto bad = RunCommand(kEvl + " submit --dry-run --template " + dir + "/bad.sbatch.in" + Config(dir, 10));
  EXPECT_NE(bad.status, 0);
  EXPECT_NE(bad.output.find("bad.sbatch.in:3: unknown placeholder {{NODE_COUNT}}"), std::string::npos) << bad.output;
}

TEST_F(Slurm, SubmitTrainsThenEvaluates) {
  const std::string dir = ScratchDir("slurm_train");
  auto r = RunCommand(kEvl + " submit --tasks-per-node 2 --time 10 --then-eval" + Config(dir, 150));
  ASSERT_EQ(r.status, 0) << r.output;
  const auto ids = JobIds(r.output);
  ASSERT_EQ(ids.size(), 2u) << r.output;
  auto train = WaitForJob(ids[0], 240);
  const std::string train_log = ReadFile(dir + "/slurm/train-" + ids[0] + ".out");
  ASSERT_EQ(train["JobState"], "COMPLETED") << train_log;
  EXPECT_EQ(train["Restarts"], "0");  // a job that finishes is not requeued
  EXPECT_NE(train_log.find("rank 0/2 on "), std::string::npos) << train_log;  // each rank names host and device
  EXPECT_NE(train_log.find("rank 1/2 on "), std::string::npos) << train_log;
  EXPECT_NE(train_log.find("step 150/150"), std::string::npos) << train_log;
  auto eval = WaitForJob(ids[1], 120);
  const std::string eval_log = ReadFile(dir + "/slurm/eval-" + ids[1] + ".out");
  ASSERT_EQ(eval["JobState"], "COMPLETED") << eval_log;
  EXPECT_NE(eval_log.find("evaluating " + dir + "/checkpoints/ckpt-00000150.evlckpt"), std::string::npos) << eval_log;
  EXPECT_TRUE(std::regex_search(eval_log, std::regex("top1 [0-9.]+  top5"))) << eval_log;
  // It trained: the mean loss of the last 20 steps is well below that of the first 20.
  const std::vector<double> losses = StepLosses(dir);
  ASSERT_EQ(losses.size(), 150u);
  double first = 0, last = 0;
  for (int i = 0; i < 20; ++i) first += losses[i] / 20, last += losses[losses.size() - 1 - i] / 20;
  EXPECT_LT(last, 0.7 * first) << "loss " << first << " -> " << last;
}

// Slurm's time-limit warning (USR1) wherever it lands: during start-up (before MPI is up: this
// killed the tasks with "User defined signal 1" while the handlers were installed later), at a
// step, during an evaluation, during a checkpoint save. The signal is injected at that point, not
// timed: each run checkpoints, requeues itself, and resumes to the uninterrupted run's exact
// parameters and per-step losses.
class SlurmSignal : public Slurm, public ::testing::WithParamInterface<const char*> {};

TEST_P(SlurmSignal, UsrOneRequeuesAndResumesExactly) {
  const std::string where = GetParam();
  const std::string schedule = " --set train.eval_freq=10 --set train.save_freq=10";
  const std::string ref = ScratchDir("slurm_ref_" + where), dir = ScratchDir("slurm_requeue_" + where);
  auto r0 = RunCommand(kMpirun + "-np 2 " + kEvl + " train" + Config(ref, 30) + schedule);
  ASSERT_EQ(r0.status, 0) << r0.output;
  const std::string env = where == "step" ? "EVL_TEST_SIGNAL_AT_STEP=7" : "EVL_TEST_SIGNAL_AT=" + where;
  auto [id, job, log] = SubmitAndWait(env, "--tasks-per-node 2 --time 10" + Config(dir, 30) + schedule, dir, 300);
  ASSERT_EQ(job["JobState"], "COMPLETED") << log;
  EXPECT_EQ(job["Restarts"], "1") << log;
  EXPECT_NE(log.find("stop signal: checkpoint saved"), std::string::npos) << log;
  EXPECT_NE(log.find("requeued Slurm job " + id), std::string::npos) << log;
  EXPECT_EQ(log.find("requeue failed"), std::string::npos) << log;
  EXPECT_NE(log.find("SLURM_RESTART_COUNT 1 "), std::string::npos) << log;
  EXPECT_NE(log.find("resumed from"), std::string::npos) << log;
  EXPECT_EQ(RunCommand("cmp " + ref + "/final_params.npy " + dir + "/final_params.npy").status, 0)
      << "resumed parameters differ from the uninterrupted run\n" << log;
  EXPECT_EQ(StepLosses(ref), StepLosses(dir)) << "per-step losses differ";
}

INSTANTIATE_TEST_SUITE_P(Points, SlurmSignal, ::testing::Values("startup", "step", "eval", "save"));

// A plain scancel (SIGTERM) ends the job: the ranks save a checkpoint, nobody requeues.
TEST_F(Slurm, ScancelStopsTheJobWithoutRequeueing) {
  const std::string dir = ScratchDir("slurm_scancel");
  auto r = RunCommand("EVL_TEST_STEP_DELAY_MS=200 " + kEvl + " submit --tasks-per-node 2 --time 10" + Config(dir, 2000));
  ASSERT_EQ(r.status, 0) << r.output;
  const auto ids = JobIds(r.output);
  ASSERT_EQ(ids.size(), 1u) << r.output;
  const std::string log_path = dir + "/slurm/train-" + ids[0] + ".out";
  // Cancel once training has begun: an event in the log, not a time.
  for (int i = 0; i < 600 && ReadFile(log_path).find("step 20/") == std::string::npos; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  ASSERT_NE(ReadFile(log_path).find("step 20/"), std::string::npos) << ReadFile(log_path);
  RunCommand("scancel " + ids[0]);
  auto job = WaitForJob(ids[0], 120);
  const std::string log = ReadFile(log_path);
  EXPECT_EQ(job["JobState"], "CANCELLED") << log;
  EXPECT_EQ(job["Restarts"], "0") << log;
  EXPECT_EQ(log.find("requeued Slurm job"), std::string::npos) << log;
}

TEST_F(Slurm, RequeueLimitEndsTheJob) {
  const std::string dir = ScratchDir("slurm_limit");
  auto [id, job, log] = SubmitAndWait("EVL_TEST_SIGNAL_AT_STEP=5", "--tasks-per-node 2 --time 10 --max-requeues 0" +
                                      Config(dir, 40), dir, 120);
  EXPECT_EQ(job["JobState"], "FAILED") << log;
  EXPECT_EQ(job["ExitCode"], "75:0") << log;
  EXPECT_EQ(job["Restarts"], "0") << log;
  EXPECT_NE(log.find("not requeueing Slurm job " + id), std::string::npos) << log;
  EXPECT_NE(log.find("slurm.max_requeues 0"), std::string::npos) << log;
}

}  // namespace
}  // namespace evl::test
