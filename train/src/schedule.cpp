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

}  // namespace evl
