#include "divergence_guard.h"

#include <algorithm>
#include <cmath>

namespace evl {

DivergenceGuard::DivergenceGuard(int patience, bool has_scaler, std::string run_dir)
    : patience_(std::max(1, patience)), has_scaler_(has_scaler), run_dir_(std::move(run_dir)) {}

DivergenceGuard::Verdict DivergenceGuard::Check(int64_t step, double loss, bool overflow, bool update_nonfinite,
                                                double lr) {
  message_.clear();
  // With a scaler an overflow is its business (scale halved, step skipped); without one it is a
  // NaN/Inf gradient like any other.
  const bool nonfinite = !std::isfinite(loss) || (overflow && !has_scaler_);
  in_a_row_ = nonfinite ? in_a_row_ + 1 : 0;
  if (update_nonfinite) {
    message_ = "training diverged: the update of step " + std::to_string(step) + " made parameters NaN/Inf (lr " +
               std::to_string(lr) + "); stopping without saving it. The checkpoints in " + run_dir_ +
               "/checkpoints are from before; lower train.lr or set train.grad_clip, then resume.";
    return Verdict::kDiverged;
  }
  if (in_a_row_ >= patience_) {
    message_ = "training diverged: " + std::to_string(in_a_row_) + " steps in a row with a NaN/Inf loss or gradients (steps " +
               std::to_string(step + 1 - in_a_row_) + "-" + std::to_string(step) + "), each skipped, so no parameter " +
               "and no checkpoint in " + run_dir_ + "/checkpoints holds a NaN. Check the data and data.mean/std, lower " +
               "train.lr, set train.grad_clip or use train.precision FP32/BF16, then resume.";
    return Verdict::kDiverged;
  }
  if (!nonfinite) return Verdict::kOk;
  message_ = "step " + std::to_string(step) + ": " +
             (std::isfinite(loss) ? std::string("NaN/Inf gradients") : "loss " + std::to_string(loss)) + "; step skipped (" +
             std::to_string(in_a_row_) + " in a row, train.nonfinite_patience " + std::to_string(patience_) + ")";
  return Verdict::kSkipped;
}

}  // namespace evl
