// `evl eval`: distributed multi-view evaluation of a checkpoint (official .pth or evl checkpoint).
#include <CLI/CLI.hpp>
#include <glog/logging.h>

#include <iomanip>
#include <iostream>

#include "commands.h"
#include "config.h"
#include "evl/logging.h"
#include "evl/file_util.h"
#include "evl/checkpoint_manager.h"
#include "evl/communicator.h"
#include "evl/dataset_lists.h"
#include "evl/evaluator.h"
#include "evl/exit_status.h"
#include "evl/preflight.h"
#include "evl/model_factory.h"
#include "evl/runtime_info.h"
#include "evl/topology.h"
#include "evl/trainer.h"
#include "evl/weights.h"

namespace evl {
namespace {

// The run's newest checkpoint that verifies (what a chained `evl submit --then-eval` evaluates):
// rank 0 reads and checks the candidates, the others learn its choice. "" if there is none.
std::string NewestCheckpointOfTheRun(const EvlConfig& config, Communicator& comm) {
  std::string newest;
  if (comm.rank() == 0) {
    std::vector<std::string> skipped;
    newest = FindNewestValidCheckpoint(config.train().run_dir(), &skipped);
    for (const auto& s : skipped) LOG(WARNING) << "skipping checkpoint " << s;
  }
  return comm.BroadcastString(newest, 0, "checkpoint to evaluate", config.dist().checkpoint_timeout_s());
}

int RunEval(int* argc, char*** argv, const ConfigFlags& flags, const std::string& checkpoint, const std::string& out,
            int preflight_ranks) {
  EvlConfig config = LoadEffectiveConfig(flags.config_path, flags.overrides);
  if (!PassesRankPreflight(config, PreflightFor::kEval, preflight_ranks)) return 2;
  if (preflight_ranks > 0) return 0;
  return RunRankJob(argc, argv, config.train().threads(), DeviceRequestOf(config), [&](const Topology& topo) {
    // Results are gathered as CPU tensors, so evaluation needs the MPI backend alone.
    auto comm = MakeRoutingCommunicator(MakeMpiCommunicator(config.dist().stall_timeout_s()), nullptr);
    const std::string weights = checkpoint.empty() ? NewestCheckpointOfTheRun(config, *comm) : checkpoint;
    if (weights.empty()) {
      LOG_IF(ERROR, topo.rank == 0) << "evl eval: no --checkpoint given and no valid checkpoint in "
                                    << config.train().run_dir() << "/checkpoints";
      return kExitUsage;
    }
    ResolveDataPaths(&config, *comm);
    const DatasetLists lists = ReadDatasetLists(config, /*train=*/false, /*val=*/true, *comm);
    if (!lists.problems.empty()) {
      LOG_IF(ERROR, topo.rank == 0) << PreflightReport(lists.problems);
      return kExitUsage;
    }
    LOG_IF(INFO, topo.rank == 0) << "evaluating " << weights;
    const torch::Device device(topo.device);
    EVLTransformer model = BuildModel(config, device);
    LoadTrainedWeights(*model, weights);
    const std::string dir = out.empty() ? config.train().run_dir() + "/eval" : out;
    if (topo.rank == 0) MakeDirectories(dir);
    const EvalReport r = Evaluate(model, config, lists.val, *comm, device, dir);
    if (topo.rank == 0) {
      std::cout << std::fixed << std::setprecision(2) << "videos " << r.videos << " (evaluated " << r.evaluated
                << ", undecodable " << r.skipped << "), " << config.data().num_temporal_views() << "x"
                << config.data().num_spatial_views() << " views, " << Aggregation_Name(config.eval().aggregation())
                << "\ntop1 " << r.top1_all << "  top5 " << r.top5_all << "  mean-class top1 " << r.mean_class_top1
                << "   (over all videos)\ntop1 " << r.top1_decoded << "  top5 " << r.top5_decoded
                << "   (over decoded videos)\n" << r.videos_per_s << " videos/s, " << 100 * r.data_share
                << "% of the time waiting for decoded videos; predictions.jsonl, metrics.json, "
                << "confusion.csv in " << dir << "\n";
    }
    return 0;
  });
}

}  // namespace

void AddEvalCommand(CLI::App& app, Invocation& inv) {
  auto* cmd = app.add_subcommand("eval", "distributed multi-view evaluation of a checkpoint");
  auto flags = std::make_shared<ConfigFlags>();
  auto checkpoint = std::make_shared<std::string>(), out = std::make_shared<std::string>();
  auto preflight_ranks = std::make_shared<int>(0);
  AddConfigFlags(cmd, flags.get());
  AddPreflightRanksOption(cmd, preflight_ranks.get());
  cmd->add_option("--checkpoint", *checkpoint,
                  "official .pth or evl checkpoint (default: the newest valid one in RUN_DIR/checkpoints)");
  cmd->add_option("--out", *out, "output directory (default RUN_DIR/eval)");
  cmd->add_flag_callback("--save-scores", [flags] { flags->overrides.push_back("eval.save_scores=true"); },
                "also write scores.npy: every video's score vector [videos, classes] in list order, for ensembling");
  OnChosen(cmd, inv, [&inv, flags, checkpoint, out, preflight_ranks] {
    return RunEval(inv.argc, inv.argv, *flags, *checkpoint, *out, *preflight_ranks);
  });
}

}  // namespace evl
