#include "evl/schedule.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace evl {

std::string Hms(double seconds) {
  const int64_t s = static_cast<int64_t>(seconds);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", static_cast<long>(s / 3600), static_cast<long>((s / 60) % 60),
                static_cast<long>(s % 60));
  return buf;
}

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
