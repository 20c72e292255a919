#include "evl/schedule.h"

#include <algorithm>
#include <cmath>

namespace evl {

double LearningRate(const TrainConfig& t, int64_t step) {
  const double base = t.lr();
  const int64_t warm = t.warmup_steps();
  if (step < warm) return base * (step + 1) / warm;
  const double progress = static_cast<double>(step - warm) / std::max<int64_t>(1, t.num_steps() - warm);
  return base * 0.5 * (1.0 + std::cos(M_PI * progress));
}

double RemainingSeconds(double elapsed_s, int64_t start_step, int64_t steps_done, int64_t num_steps) {
  const int64_t ran = steps_done - start_step;
  return ran > 0 ? elapsed_s / static_cast<double>(ran) * static_cast<double>(num_steps - steps_done) : 0.0;
}

}  // namespace evl
