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

bool RunCheckpoints::MaybeSave(int64_t step, const TrainState& state, double lr, bool stop) {
  const TrainConfig& t = config_.train();
  const bool due = stop || step == t.num_steps() || (t.save_freq() > 0 && step % t.save_freq() == 0);
  if (!writer_ || !due) return true;
  Faults().At(FaultPoint::kSave);
  writer_->Save(Snapshot(state, config_, step, world_, lr));
  if (!stop) return true;
  if (writer_->Wait()) {
    LOG(WARNING) << "stop signal: checkpoint saved at step " << step << "; exiting with status " << kExitPreempted
                 << " (resume to continue)";
    return true;
  }
  // Not 75: a requeue would resume the older checkpoint and meet the same full disk, every time.
  LOG(ERROR) << "stop signal: checkpoint FAILED at step " << step << ": " << writer_->LastError()
             << "; exiting with status " << kExitNotSaved
             << " (this step is not on disk; a resume continues from the last checkpoint written)";
  return false;
}

bool RunCheckpoints::Finish() {
  if (!writer_ || writer_->Wait()) return true;
  LOG(ERROR) << "the last checkpoint failed: " << writer_->LastError();
  return false;
}

}  // namespace evl
