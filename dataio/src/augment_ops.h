// Internal to evl_dataio: RandAugment's ops as kernels on uint8 RGB frames, behind the policy in
// rand_augment.cpp. Each op that a compiler can vectorize comes as an explicit pair, Foo (the
// baseline x86-64/any-CPU build) and FooAvx2 (the same source compiled for AVX2, chosen at run time
// where the CPU has it); both give the same bytes (the files are compiled with -ffp-contract=off and
// the compiler's vectorizer never reorders float operations). The pointwise ops live in
// augment_pointwise.cpp, the affine ones in augment_affine.cpp.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>

#include "evl/rand_augment.h"

namespace evl {
namespace augment {

// Every op of the official list, the *Increasing variants folded into the op they parametrize
// differently (how an op is applied does not depend on it).
enum class Op {
  kAutoContrast, kEqualize, kInvert, kRotate, kPosterize, kSolarize, kSolarizeAdd, kColor, kContrast,
  kBrightness, kSharpness, kShearX, kShearY, kTranslateXRel, kTranslateYRel,
};

struct OpName {
  Op op;
  bool increasing;
};
// The op an official name ("Rotate", "PosterizeIncreasing", ...) stands for; nullopt if unknown.
std::optional<OpName> ResolveOp(const std::string& name);

// One frame: H x W x 3 bytes, and the region r whose output pixels an op must compute (the rest is
// left as it is: the caller does not read it).
struct Frame {
  uint8_t* p;
  int64_t h, w;
  AugmentRegion r;
};

// The pointwise and enhancement ops on one frame's region (arguments as LevelToArg gives them);
// each picks its AVX2 twin where the CPU has it.
void ApplyPointwise(Op op, double arg, const Frame& f);

// The affine map an op applies (output pixel centre -> input position, Pillow's six coefficients);
// nullopt for an op that is not affine.
std::optional<std::array<double, 6>> AffineOf(Op op, double arg, int64_t w, int64_t h);

// Applies the affine map `m` to every frame of a clip [T, H, W, 3] in place: output region `out`,
// which reads input region `in`. `vectorized` = false forces the scalar code (tests compare).
void AffineClip(uint8_t* clip, int64_t T, int64_t h, int64_t w, AugmentRegion in, AugmentRegion out,
                const std::array<double, 6>& m, bool vectorized);

// The bytes AffineClip keeps allocated on this thread between clips (its AVX2 path's scratch).
size_t AffineScratchBytes();

}  // namespace augment
}  // namespace evl
