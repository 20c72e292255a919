#include "run_checkpoints.h"

#include <glog/logging.h>

#include "evl/fault_injection.h"
#include "evl/stop_signal.h"

namespace evl {

RunCheckpoints::RunCheckpoints(const EvlConfig& config, int world, bool writer) : config_(config), world_(world) {
  if (writer) writer_ = std::make_unique<AsyncCheckpointer>(config.train().run_dir(), config.train().keep_last());
}

void RunCheckpoints::MaybeSaveBest(const EvalReport& report, int64_t step, TrainState* state, double lr) {
  if (!writer_ || !config_.eval().keep_best() || report.top1_all <= state->best_top1) return;
  state->best_top1 = report.top1_all;
  state->best_step = step;
  LOG(INFO) << "new best top1 " << state->best_top1 << ": " << BestCheckpointPath(config_.train().run_dir());
  writer_->SaveBest(Snapshot(*state, config_, step, world_, lr));
}

void RunCheckpoints::MaybeSave(int64_t step, const TrainState& state, double lr, bool stop) {
  const TrainConfig& t = config_.train();
  const bool due = stop || step == t.num_steps() || (t.save_freq() > 0 && step % t.save_freq() == 0);
  if (!writer_ || !due) return;
  Faults().At(FaultPoint::kSave);
  writer_->Save(Snapshot(state, config_, step, world_, lr));
  if (!stop) return;
  const bool ok = writer_->Wait();
  LOG(WARNING) << "stop signal: " << (ok ? "checkpoint saved" : "checkpoint FAILED: " + writer_->LastError())
               << " at step " << step << "; exiting with status " << kExitPreempted << " (resume to continue)";
}

bool RunCheckpoints::Finish() {
  if (!writer_ || writer_->Wait()) return true;
  LOG(ERROR) << "the last checkpoint failed: " << writer_->LastError();
  return false;
}

}  // namespace evl
