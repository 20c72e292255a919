// The divergence policy of a training run: a step with a NaN/Inf loss or gradients is skipped (the
// loss scaler, or the trainer without one, leaves the parameters as they were); train.
// nonfinite_patience such steps in a row end the run; an update that itself made the parameters
// NaN/Inf ends it at once, since it cannot be taken back. Every rank sees the same summed loss and
// all-reduced gradients, so every rank decides alike. Pure bookkeeping: no tensors, no logging.
#pragma once

#include <cstdint>
#include <string>

namespace evl {

class DivergenceGuard {
 public:
  enum class Verdict { kOk, kSkipped, kDiverged };

  // `run_dir` and the advice in the messages name where the untouched checkpoints are.
  DivergenceGuard(int patience, bool has_scaler, std::string run_dir);

  // After step `step` (1-based): its summed loss, whether its gradients overflowed (the update was
  // skipped) and whether the update made a parameter NaN/Inf. kSkipped and kDiverged come with a
  // message() for the log.
  Verdict Check(int64_t step, double loss, bool overflow, bool update_nonfinite, double lr);
  const std::string& message() const { return message_; }
  int nonfinite_in_a_row() const { return in_a_row_; }

 private:
  int patience_;
  bool has_scaler_;
  std::string run_dir_, message_;
  int in_a_row_ = 0;
};

}  // namespace evl
