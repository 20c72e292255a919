// Multi-node on one machine: each test brings up a simulated cluster (tests/cluster/netns-cluster.sh:
// network + UTS namespaces on a bridge, Open MPI's daemons started through an rsh agent, Slurm with
// one slurmd per node) and tears it down. What changes across nodes is checked here: node and local
// ranks, traffic over TCP, one writer in a shared run directory, `evl data prepare` sharded over
// nodes, Slurm with --nodes 2, a node that crashes and a link that goes down.
#include <gtest/gtest.h>

#include <stdlib.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include "test_paths.h"
#include "test_util.h"

namespace evl::test {
namespace {

const std::string kEvl = EVL_BIN;
const std::string kSrc = EVL_SOURCE_DIR;
const std::string kClusterSh = kSrc + "/tests/cluster/netns-cluster.sh";

class Cluster : public ::testing::Test {
 protected:
  // Brings up `nodes` simulated nodes under a scratch directory named after the test. False when
  // it could not (the test has then failed, or skipped where the kernel refuses namespaces and
  // EVL_ALLOW_SKIPS=1 lets it): the caller returns. (A GTEST_SKIP or ASSERT in here would leave
  // only this helper, and the test's body would go on without a cluster.)
  [[nodiscard]] bool Up(int nodes) {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    std::string name = std::string(info->test_suite_name()) + "_" + info->name();
    for (char& c : name) c = std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
    dir_ = std::filesystem::absolute(ScratchDir("cluster_" + name)).string();
    auto r = RunCommand(kClusterSh + " up " + dir_ + "/net " + std::to_string(nodes));
    if (r.status == 77) {  // the kernel refuses namespaces
      if (std::getenv("EVL_ALLOW_SKIPS") && std::string(std::getenv("EVL_ALLOW_SKIPS")) == "1") {
        [&] { GTEST_SKIP() << r.output; }();  // records the skip; returns from the lambda only
        return false;
      }
      ADD_FAILURE() << "cannot make network namespaces here (EVL_ALLOW_SKIPS=1 to skip): " << r.output;
      return false;
    }
    EXPECT_EQ(r.status, 0) << r.output;
    up_ = r.status == 0;
    return up_;
  }
  void TearDown() override {
    if (!up_) return;
    RunCommand(". " + dir_ + "/net/env; [ -z \"$SLURM_CONF\" ] || { ids=$(squeue -h -o %i); [ -z \"$ids\" ] || scancel $ids; }");
    RunCommand(kClusterSh + " down " + dir_ + "/net");
  }
  // A shell command with the cluster's environment (Open MPI's launch agent and interfaces).
  std::string On(const std::string& cmd) const { return ". " + dir_ + "/net/env && " + cmd; }
  std::string Net() const { return dir_ + "/net"; }
  std::string Hosts(int nodes, int per_node) const {
    std::string h;
    for (int i = 0; i < nodes; ++i) h += (i ? ",node" : "node") + std::to_string(i) + ":" + std::to_string(per_node);
    return h;
  }
  // A short run of the quick-start model on the shared synthetic dataset, 1 thread per rank.
  static std::string Config(const std::string& run_dir, int steps, const std::string& extra = "") {
    return SharedSynthData(kEvl) + " --set train.num_steps=" + std::to_string(steps) +
           " --set train.threads=1 --set train.eval_freq=0 --set train.print_freq=2 --set train.run_dir=" + run_dir + extra;
  }
  static std::string Abs(const std::string& p) { return std::filesystem::absolute(p).string(); }

  std::string dir_;
  bool up_ = false;
};

// The same job on one node with 4 ranks and on N nodes: same per-step losses, each rank on its node
// and local rank, and the gradients really cross the links over Open MPI's TCP transport.
class ClusterLaunch : public Cluster, public ::testing::WithParamInterface<int> {};

TEST_P(ClusterLaunch, MatchesOneNodeAndTalksOverTcp) {
  const int nodes = GetParam(), per_node = 4 / nodes;
  if (!Up(nodes)) return;
  const std::string ref = Abs(ScratchDir("cluster_ref_np4_" + std::to_string(nodes)));
  auto r0 = RunCommand(kEvl + " launch -n 4 -- train" + Config(ref, 20));
  ASSERT_EQ(r0.status, 0) << r0.output;
  const std::string run = dir_ + "/run";
  const std::string before = RunCommand(kClusterSh + " bytes " + Net() + " 1").output;
  auto r = RunCommand(On("OMPI_MCA_btl_base_verbose=30 " + kEvl + " launch -n 4 --hosts " + Hosts(nodes, per_node) +
                         " -- train" + Config(run, 20)));
  ASSERT_EQ(r.status, 0) << r.output;
  const double sent = std::stod(RunCommand(kClusterSh + " bytes " + Net() + " 1").output) - std::stod(before);
  for (int rank = 0; rank < 4; ++rank) {
    const int node = rank / per_node, local = rank % per_node;
    const std::string want = "rank " + std::to_string(rank) + "/4 on node" + std::to_string(node) + " (node " +
                             std::to_string(node) + "/" + std::to_string(nodes) + ", local rank " + std::to_string(local) +
                             "/" + std::to_string(per_node) + ")";
    EXPECT_NE(r.output.find(want), std::string::npos) << want << "\n" << r.output;
  }
  EXPECT_NE(r.output.find("select: init of component tcp returned success"), std::string::npos) << r.output;
  // 20 steps of gradient all-reduce of the quick-start decoder (~0.5 MB) leave node 1 over its link.
  EXPECT_GT(sent, 20 * 100e3) << "node 1 sent only " << sent << " bytes";
  const auto a = StepLosses(ref), b = StepLosses(run);
  ASSERT_EQ(a.size(), 20u);
  ASSERT_EQ(b.size(), 20u);
  for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], 1e-5) << "step " << i + 1;
}

INSTANTIATE_TEST_SUITE_P(Nodes, ClusterLaunch, ::testing::Values(2, 4));

// A node fails at step 12 of a 2 x 2 job (save every 5 steps, 5 s stall timeout): `kill` takes all
// its processes down at once; `link` cuts it off, processes alive. Either way the job ends within a
// bound, with no process left on any node (the link still down), and a rerun resumes from the last
// valid checkpoint and finishes.
class ClusterFault : public Cluster, public ::testing::WithParamInterface<const char*> {};

TEST_P(ClusterFault, TheJobEndsWithinABoundAndResumes) {
  const std::string fault = GetParam();
  if (!Up(2)) return;
  const std::string run = dir_ + "/run";
  const std::string job = kEvl + " launch -n 4 --hosts node0:2,node1:2 --abort-timeout 5 -- train" +
                          Config(run, 40, " --set train.save_freq=5 --set dist.stall_timeout_s=5");
  auto r = RunCommand(On("EVL_TEST_STEP_DELAY_MS=100 " + kSrc + "/tests/cluster/run-with-fault.sh " + Net() + " " + dir_ +
                         "/fault.log 'step 12/' " + fault + " 1 -- " + job));
  const std::string log = ReadFile(dir_ + "/fault.log");
  ASSERT_EQ(r.status, 0) << r.output << log;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(r.output, m, std::regex("status=(\\d+)  exit_s=([0-9.]+)  clean_s=([0-9.]+)")))
      << r.output << log;
  EXPECT_NE(std::stoi(m[1]), 0) << log;
  // A cut link is a stalled job, status 4 (evl/exit_status.h), whether mpirun ends it or evl launch
  // has to kill mpirun after --abort-timeout (which returned 1 before).
  if (fault == std::string("link")) EXPECT_EQ(std::stoi(m[1]), 4) << log;
  // A crash closes the connections: the job ends at once (measured 2.7 s). A cut link is noticed by
  // the stall detector (5 s) and ended by the bounded abort (5 s grace) and evl launch's
  // --abort-timeout (5 s after mpirun reports it): measured 11.5 s.
  // The link case's bound is the design (stall 5 s + abort grace 5 s + --abort-timeout 5 s) with
  // three times that for a loaded machine: it fails for a hang, not for a slow CI run.
  const double bound = fault == std::string("kill") ? 60 : 3 * (5 + 5 + 5);
  EXPECT_LT(std::stod(m[2]), bound) << "evl launch ended " << m[2] << " s after the fault\n" << log;
  EXPECT_LT(std::stod(m[3]), bound) << "processes left on the nodes until " << m[3] << " s after the fault\n" << log;
  if (fault == std::string("link")) {
    // Rank 0's stall report names the ranks whose arrival at the stalled collective never reached
    // it — node 1's ranks 2 and 3, never a rank of node 0. Which of them had announced it before the
    // link went down is a race the fault at a step cannot rule out (seen: both, only 3, neither);
    // when both had, the report says every rank arrived and calls it a network fault.
    EXPECT_TRUE(std::regex_search(log, std::regex("rank 0: collective #\\d+ '[^']+' did not complete in 5 s.*"
                                                  "(ranks? not arrived: [23] \\([^)]*\\)(, [23] \\([^)]*\\))?;|"
                                                  "every rank arrived \\(a collective mismatch or a network fault\\))")))
        << log;
    RunCommand(kClusterSh + " link " + Net() + " 1 up");
  }
  auto again = RunCommand(On(job));
  ASSERT_EQ(again.status, 0) << again.output;
  EXPECT_TRUE(std::regex_search(again.output, std::regex("resumed from .*ckpt-000000(05|10)\\.evlckpt"))) << again.output;
  EXPECT_NE(again.output.find("step 40/40"), std::string::npos) << again.output;
}

INSTANTIATE_TEST_SUITE_P(Faults, ClusterFault, ::testing::Values("kill", "link"));

// `evl data prepare` sharded over 2 nodes x 2 ranks: every output written once, by one rank, and both
// nodes take part. Inputs made by the ffmpeg CLI.
// A clone under /tmp failed every cluster test ("DIR must not be under /tmp or /run"): each node
// mounts its own /tmp, which hid the checkout. The directory under /tmp that holds the cluster (or
// the checkout) is bound into every node's /tmp at its own path; the rest of /tmp stays per node.
TEST(ClusterUnderTmp, TheSharedDirectoryIsSeenOnEveryNodeAndTmpStaysPerNode) {
  char tmpl[] = "/tmp/evl-cluster-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string top = tmpl, net = top + "/net";
  auto up = RunCommand(kClusterSh + " up " + net + " 2");
  ASSERT_EQ(up.status, 0) << up.output;
  RunCommand("echo shared > " + top + "/marker");
  for (int node : {0, 1}) {
    const std::string on = kClusterSh + " exec " + net + " " + std::to_string(node) + " ";
    EXPECT_EQ(RunCommand(on + "cat " + top + "/marker").output, "shared\n") << "node " << node;
    // A file in the node's own /tmp appears in DIR/nodeI/tmp, not in the host's /tmp.
    RunCommand(on + "sh -c 'echo node" + std::to_string(node) + " > /tmp/evl-node-file'");
    EXPECT_EQ(ReadFile(net + "/node" + std::to_string(node) + "/tmp/evl-node-file"), "node" + std::to_string(node) + "\n");
  }
  EXPECT_FALSE(std::filesystem::exists("/tmp/evl-node-file")) << "a node wrote into the host's /tmp";
  RunCommand(kClusterSh + " down " + net);
  RunCommand("rm -rf " + top);
}

TEST_F(Cluster, DataPrepareOverTwoNodesWritesEachFileOnce) {
  if (!Up(2)) return;
  const std::string src = dir_ + "/src", out = dir_ + "/prepared";
  auto mk = RunCommand("mkdir -p " + src + " && cd " + src + " && for i in 0 1 2 3 4 5 6 7 8 9; do "
                       "ffmpeg -nostdin -loglevel error -f lavfi -i testsrc2=size=200x150:rate=25:duration=1 "
                       "-c:v libx264 -g 25 -pix_fmt yuv420p v$i.mkv || exit 1; echo \"v$i.mkv $((i % 3))\" >> list.txt; done");
  ASSERT_EQ(mk.status, 0) << mk.output;
  auto r = RunCommand(On("GLOG_v=1 " + kEvl + " launch -n 4 --hosts node0:2,node1:2 -- data prepare --list " + src +
                         "/list.txt --data-root " + src + " --out " + out + " --short-side 120"));
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("prepared 10, already there 0, failed 0 of 10"), std::string::npos) << r.output;
  std::map<std::string, std::vector<int>> writers;
  std::regex re("r(\\d)/4 [^\\]]*\\] wrote (\\S+)");
  for (std::sregex_iterator it(r.output.begin(), r.output.end(), re), end; it != end; ++it)
    writers[(*it)[2]].push_back(std::stoi((*it)[1]));
  ASSERT_EQ(writers.size(), 10u) << r.output;
  std::set<int> ranks;
  for (const auto& [file, who] : writers) {
    EXPECT_EQ(who.size(), 1u) << file << " written by " << who.size() << " ranks";
    ranks.insert(who[0]);
  }
  EXPECT_EQ(ranks, (std::set<int>{0, 1, 2, 3}));  // ranks 2 and 3 are node 1's
  for (int i = 0; i < 10; ++i)
    EXPECT_TRUE(std::filesystem::exists(out + "/v" + std::to_string(i) + ".mp4")) << i;
}

// Slurm with --nodes 2 --tasks-per-node 2: trained, preempted twice — Slurm's time-limit warning
// (USR1 at step 7: evl checkpoints and requeues itself) and an administrator's `scontrol requeue`
// (SIGTERM) once the restarted job is past step 20 — resumed exactly (the parameters and losses of
// an uninterrupted run), then evaluated; each checkpoint written once, by rank 0, into the shared
// run directory.
TEST_F(Cluster, SlurmTwoNodesPreemptedTwiceResumesExactlyThenEvaluates) {
  if (!Up(2)) return;
  auto s = RunCommand(kClusterSh + " slurm-up " + Net());
  ASSERT_EQ(s.status, 0) << s.output;
  const std::string schedule = " --set train.save_freq=10 --set train.print_freq=5";
  const std::string ref = Abs(ScratchDir("cluster_slurm_ref")), run = dir_ + "/run";
  auto r0 = RunCommand(kEvl + " launch -n 4 -- train" + Config(ref, 60, schedule));
  ASSERT_EQ(r0.status, 0) << r0.output;
  auto r = RunCommand(On("EVL_TEST_SIGNAL_AT_STEP=7 EVL_TEST_STEP_DELAY_MS=100 " + kEvl +
                         " submit --nodes 2 --tasks-per-node 2 --time 10 --then-eval" + Config(run, 60, schedule)));
  ASSERT_EQ(r.status, 0) << r.output;
  std::vector<std::string> ids;
  std::regex id_re("submitted \\w+ job (\\d+)");
  for (std::sregex_iterator it(r.output.begin(), r.output.end(), id_re), end; it != end; ++it) ids.push_back((*it)[1]);
  ASSERT_EQ(ids.size(), 2u) << r.output;
  const std::string train_log = run + "/slurm/train-" + ids[0] + ".out";
  // The administrator's requeue comes at an event in the log (the restarted job past step 20).
  bool requeued = false;
  for (int i = 0; i < 1200 && !requeued; ++i) {
    const std::string log = ReadFile(train_log);
    const size_t restart = log.find("SLURM_RESTART_COUNT 1 ");
    if (restart != std::string::npos && log.find("step 20/", restart) != std::string::npos) {
      requeued = RunCommand(On("scontrol requeue " + ids[0])).status == 0;
      ASSERT_TRUE(requeued) << log;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
  ASSERT_TRUE(requeued) << ReadFile(train_log);
  auto job_state = [&](const std::string& id) {
    std::map<std::string, std::string> f;
    std::istringstream in(RunCommand(On("scontrol show job -o " + id)).output);
    for (std::string w; in >> w;)
      if (const size_t eq = w.find('='); eq != std::string::npos) f[w.substr(0, eq)] = w.substr(eq + 1);
    return f;
  };
  std::map<std::string, std::string> eval;
  for (int i = 0; i < 1200; ++i) {
    eval = job_state(ids[1]);
    if (eval["JobState"] == "COMPLETED" || eval["JobState"] == "FAILED" || eval["JobState"] == "CANCELLED") break;
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
  const std::string log = ReadFile(train_log);
  auto train = job_state(ids[0]);
  ASSERT_EQ(train["JobState"], "COMPLETED") << log;
  EXPECT_EQ(train["Restarts"], "2") << log;
  EXPECT_EQ(train["NumNodes"], "2") << log;
  EXPECT_NE(log.find("rank 3/4 on node1 (node 1/2, local rank 1/2)"), std::string::npos) << log;
  EXPECT_NE(log.find("SLURM_RESTART_COUNT 2 "), std::string::npos) << log;
  EXPECT_EQ(RunCommand("cmp " + ref + "/final_params.npy " + run + "/final_params.npy").status, 0)
      << "resumed parameters differ from the uninterrupted run\n" << log;
  EXPECT_EQ(StepLosses(ref), StepLosses(run)) << "per-step losses differ";
  // One writer: every checkpoint saved once, by rank 0.
  std::map<std::string, int> saves;
  std::regex save_re("(r\\d)/4 checkpoint_manager\\.cpp:\\d+\\] checkpoint saved: (\\S+)");
  for (std::sregex_iterator it(log.begin(), log.end(), save_re), end; it != end; ++it) {
    EXPECT_EQ((*it)[1], "r0") << (*it)[0];
    ++saves[(*it)[2]];
  }
  EXPECT_GE(saves.size(), 6u) << log;
  for (const auto& [path, n] : saves) EXPECT_EQ(n, 1) << path << " saved " << n << " times\n" << log;
  const std::string eval_log = ReadFile(run + "/slurm/eval-" + ids[1] + ".out");
  ASSERT_EQ(eval["JobState"], "COMPLETED") << eval_log;
  EXPECT_NE(eval_log.find("evaluating " + run + "/checkpoints/ckpt-00000060.evlckpt"), std::string::npos) << eval_log;
  EXPECT_TRUE(std::regex_search(eval_log, std::regex("top1 [0-9.]+  top5"))) << eval_log;
}

}  // namespace
}  // namespace evl::test
