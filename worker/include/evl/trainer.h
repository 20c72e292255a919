// `evl train`: the EVL training loop of one rank. Components are passed in (the communicator),
// or built from the config here (model, data, sampler, gradient reducer, optimizer, metrics).
#pragma once

#include <string>
#include <vector>

#include "evl/communicator.h"
#include "evl_config.pb.h"

namespace evl {

struct RankContext {
  int rank = 0, world = 1;
  int local_rank = 0, local_world = 1;
  int threads = 1;
  std::string device = "cpu";  // "cpu" or "cuda:K": the topology's choice (evl/device_choice.h)
};


struct TrainFlags {
  std::string resume;     // --resume PATH: wins over train.auto_resume
  std::string init_from;  // --init-from PATH: official .pth (or evl checkpoint) weights for a new run
  bool force_resume = false;  // resume even if math-relevant config fields differ
};

// Exit status of a run stopped by SIGUSR1/SIGTERM after saving a checkpoint: resume to continue.
constexpr int kExitPreempted = 75;

// Installs the SIGUSR1/SIGTERM handlers that request a checkpoint-and-exit at the next step boundary.
void InstallStopSignalHandlers();

// Trains per config; returns the process exit status (0 on success, kExitPreempted after a
// signal-triggered save). Throws on configuration or
// data errors with a message naming the field or file.
int RunTraining(const EvlConfig& config, Communicator& comm, const RankContext& ctx, const TrainFlags& flags = {});

// Differences between two configs in fields that change the math of training (model, global batch,
// schedule, data sampling, seed), as "field: old -> new" lines.
std::vector<std::string> MathConfigDifferences(const EvlConfig& saved, const EvlConfig& now);

// Resolves data.train_list/val_list: when train_list is empty the synthetic dataset in
// RUN_DIR/synth is used (rank 0 writes it if missing; every rank waits for it).
void ResolveDataPaths(EvlConfig* config, Communicator& comm);

}  // namespace evl
