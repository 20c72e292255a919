// RandAugment for video, as the official EVL code configures it (`auto_augment`, e.g.
// "rand-m7-n4-mstd0.5-inc1", after timm/PySlowFast): per clip, `n` ops drawn uniformly with
// replacement, each applied with probability 0.5 at a magnitude drawn from N(m, mstd) clipped to
// [0, 10], with the same op and arguments for every frame of the clip. The ops reproduce Pillow
// 9's (ImageOps, ImageEnhance, affine transforms with bicubic resampling and a (128,128,128) fill)
// on uint8 RGB frames. Random choices come from the caller's generator, so the sample's seed
// decides them.
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <vector>

namespace at {
class Tensor;
}

namespace evl {

struct RandAugmentConfig {
  int magnitude = 10;
  int num_layers = 2;
  double magnitude_std = 0;
  bool increasing = false;  // the *Increasing op variants ("inc")
};

// Parses "rand-m7-n4-mstd0.5-inc1". Throws std::invalid_argument naming the spec and the part.
// As in the official parser, "inc" with any value selects the increasing ops, and an unknown
// section is ignored only if it has no digits.
RandAugmentConfig ParseRandAugment(const std::string& spec);

// One drawn op: its official name ("Rotate", "PosterizeIncreasing", ...) and its argument (degrees,
// factor, bits, threshold, ... as the official level-to-argument functions give it).
struct AugmentStep {
  std::string op;
  double arg = 0;
};

// The ops this config draws from, in the official order.
const std::vector<std::string>& RandAugmentOps(const RandAugmentConfig& config);

// Draws the ops of one clip (an op skipped by its probability is left out).
std::vector<AugmentStep> SampleRandAugment(const RandAugmentConfig& config, std::mt19937_64& rng);

// Applies one op to every frame of a contiguous uint8 tensor [T, H, W, 3] and returns the result.
// Throws std::invalid_argument for an unknown op name.
at::Tensor ApplyAugmentOp(const AugmentStep& step, const at::Tensor& frames);

// A rectangle of a frame, half-open: [x0, x1) x [y0, y1).
struct AugmentRegion {
  int64_t x0, y0, x1, y1;
};

// The region of the input that the result of `steps` inside `region` depends on (frames w x h).
AugmentRegion AugmentInput(const std::vector<AugmentStep>& steps, AugmentRegion region, int64_t w, int64_t h);

// Applies `steps` in order to every frame, computing only what the pixels inside `region` of the
// result depend on; pixels outside it are unspecified. Inside, the result is exactly that of
// ApplyAugmentOp applied step by step: the training path crops after RandAugment, so work on what
// the crop throws away is skipped (ops with whole-frame statistics — AutoContrast, Equalize,
// Contrast — still read whole frames). The affine ops run eight frames at a time with AVX2 where
// the CPU has it; `vectorized` = false forces the scalar code (the same bytes: tests compare them).
// `frames` is left unchanged unless the caller hands over its only reference (std::move), which
// saves a copy of the clip: then the result is computed in its memory.
at::Tensor ApplyAugmentOps(const std::vector<AugmentStep>& steps, at::Tensor frames, AugmentRegion region,
                           bool vectorized = true);

}  // namespace evl
