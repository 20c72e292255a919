// The learning-rate schedule of the official recipe: linear warm-up over train.warmup_steps, then
// half a cosine from train.lr down to 0 at train.num_steps. A pure function of the step, so a
// resumed run continues on the same curve.
#pragma once

#include <cstdint>

#include "evl_config.pb.h"

namespace evl {

double LearningRate(const TrainConfig& train, int64_t step);

}  // namespace evl
