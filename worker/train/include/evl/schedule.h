// The learning-rate schedule of the official recipe: linear warm-up over train.warmup_steps, then
// half a cosine from train.lr down to 0 at train.num_steps. A pure function of the step, so a
// resumed run continues on the same curve.
#pragma once

#include <cstdint>
#include <string>

#include "evl_config.pb.h"

namespace evl {

double LearningRate(const TrainConfig& train, int64_t step);

// Seconds left after `steps_done` of `num_steps`, from this start's own pace: `elapsed_s` is the time
// since the run (re)started at `start_step`, so a resumed run does not divide by steps it never ran.
double RemainingSeconds(double elapsed_s, int64_t start_step, int64_t steps_done, int64_t num_steps);

// Seconds as H:MM:SS, as the progress line and the summary print durations.
std::string Hms(double seconds);

}  // namespace evl
