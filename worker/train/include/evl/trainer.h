// `evl train`: the EVL training loop of one rank (worker/train/src/trainer.cpp, one page). The communicator
// is passed in; everything else (model, data, sampler, gradient reducer, optimizer, metrics) is
// built from the config.
#pragma once

#include <string>
#include <vector>

#include "evl/communicator.h"
#include "evl/exit_status.h"
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
  bool restarted = false;     // a requeued job's later run: continue from the newest checkpoint
};

// Trains per config; returns the process exit status (evl/exit_status.h): 0 on success,
// kExitPreempted after a signal-triggered save, kExitDiverged after train.nonfinite_patience steps
// in a row with a NaN/Inf loss or gradients (each skipped, nothing of them saved), kExitNotSaved
// when the last checkpoint could not be written. Throws on configuration or data errors with a
// message naming the field or file.
int RunTraining(const EvlConfig& config, Communicator& comm, const RankContext& ctx, const TrainFlags& flags = {});

// Resolves data.train_list/val_list: when train_list is empty and data.synthetic.enabled, the
// synthetic dataset in RUN_DIR/cache/synthetic-data is used (rank 0 writes it if missing; every rank waits for it).
void ResolveDataPaths(EvlConfig* config, Communicator& comm);

}  // namespace evl
