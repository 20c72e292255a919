// RandAugment's policy: the spec, the official op lists and level-to-argument functions, drawing a
// clip's chain, and running a chain over a clip — each op's name resolved once per chain, the
// region each op must compute worked out backwards from what the caller reads. The kernels are in
// augment_pointwise.cpp and augment_affine.cpp (augment_ops.h).
#include "evl/rand_augment.h"

#include <torch/torch.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <regex>
#include <stdexcept>
#include <unordered_map>

#include "augment_ops.h"

namespace evl {
namespace augment {

std::optional<OpName> ResolveOp(const std::string& name) {
  static const std::unordered_map<std::string, OpName> kByName = {
      {"AutoContrast", {Op::kAutoContrast, false}},   {"Equalize", {Op::kEqualize, false}},
      {"Invert", {Op::kInvert, false}},               {"Rotate", {Op::kRotate, false}},
      {"Posterize", {Op::kPosterize, false}},         {"PosterizeIncreasing", {Op::kPosterize, true}},
      {"Solarize", {Op::kSolarize, false}},           {"SolarizeIncreasing", {Op::kSolarize, true}},
      {"SolarizeAdd", {Op::kSolarizeAdd, false}},     {"Color", {Op::kColor, false}},
      {"ColorIncreasing", {Op::kColor, true}},        {"Contrast", {Op::kContrast, false}},
      {"ContrastIncreasing", {Op::kContrast, true}},  {"Brightness", {Op::kBrightness, false}},
      {"BrightnessIncreasing", {Op::kBrightness, true}}, {"Sharpness", {Op::kSharpness, false}},
      {"SharpnessIncreasing", {Op::kSharpness, true}}, {"ShearX", {Op::kShearX, false}},
      {"ShearY", {Op::kShearY, false}},               {"TranslateXRel", {Op::kTranslateXRel, false}},
      {"TranslateYRel", {Op::kTranslateYRel, false}},
  };
  const auto it = kByName.find(name);
  if (it == kByName.end()) return std::nullopt;
  return it->second;
}

}  // namespace augment

namespace {

using augment::Op;
using augment::OpName;

constexpr double kMaxLevel = 10.0;

OpName Resolve(const std::string& name) {
  const auto op = augment::ResolveOp(name);
  if (!op) throw std::invalid_argument("RandAugment: unknown op \"" + name + "\"");
  return *op;
}

double RandomlyNegate(double v, std::mt19937_64& rng) {
  return std::uniform_real_distribution<double>(0, 1)(rng) > 0.5 ? -v : v;
}

// The official level-to-argument functions.
double LevelToArg(OpName name, double level, std::mt19937_64& rng) {
  const double l = level / kMaxLevel;
  switch (name.op) {
    case Op::kRotate: return RandomlyNegate(l * 30.0, rng);
    case Op::kPosterize: return name.increasing ? 4 - static_cast<int>(l * 4) : static_cast<int>(l * 4);
    case Op::kSolarize: return name.increasing ? 256 - static_cast<int>(l * 256) : static_cast<int>(l * 256);
    case Op::kSolarizeAdd: return static_cast<int>(l * 110);
    case Op::kColor:
    case Op::kContrast:
    case Op::kBrightness:
    case Op::kSharpness: return name.increasing ? 1.0 + RandomlyNegate(l * 0.9, rng) : l * 1.8 + 0.1;
    case Op::kShearX:
    case Op::kShearY: return RandomlyNegate(l * 0.3, rng);
    case Op::kTranslateXRel:
    case Op::kTranslateYRel: return RandomlyNegate(l * 0.45, rng);
    default: return 0;  // AutoContrast, Equalize, Invert
  }
}

// The whole of `text` as a number (no trailing characters, in range).
template <typename T>
bool ParseWhole(const std::string& text, T* out) {
  const auto r = std::from_chars(text.data(), text.data() + text.size(), *out);
  return r.ec == std::errc() && r.ptr == text.data() + text.size();
}

}  // namespace

RandAugmentConfig ParseRandAugment(const std::string& spec) {
  RandAugmentConfig c;
  auto bad = [&](const std::string& why) {
    return std::invalid_argument("auto_augment \"" + spec + "\": " + why +
                                 " (expected e.g. \"rand-m7-n4-mstd0.5-inc1\")");
  };
  size_t pos = spec.find('-');
  if (spec.substr(0, pos) != "rand") throw bad("only RandAugment (\"rand-...\") is supported");
  const std::regex section("([a-z]*)([0-9].*)");
  while (pos != std::string::npos) {
    const size_t next = spec.find('-', pos + 1);
    const std::string part = spec.substr(pos + 1, next == std::string::npos ? std::string::npos : next - pos - 1);
    pos = next;
    std::smatch m;
    // A section without a value is ignored by the official parser (timm); here it is refused:
    // "rand-m7-n4-foo" is a typo, not a recipe.
    if (!std::regex_match(part, m, section)) throw bad("section \"" + part + "\" has no value");
    const std::string key = m[1], val = m[2];
    if (key == "inc") {
      c.increasing = true;  // official: bool("0") is True too
      continue;
    }
    if (key == "w") throw bad("weighted op choice (\"w\") is not supported");
    bool ok;
    if (key == "m") ok = ParseWhole(val, &c.magnitude);
    else if (key == "n") ok = ParseWhole(val, &c.num_layers);
    else if (key == "mstd") ok = ParseWhole(val, &c.magnitude_std);
    else throw bad("unknown section \"" + part + "\"");
    if (!ok) throw bad("bad value in \"" + part + "\"");
  }
  if (c.num_layers < 0 || c.magnitude < 0) throw bad("m and n must be >= 0");
  return c;
}

const std::vector<std::string>& RandAugmentOps(const RandAugmentConfig& config) {
  static const std::vector<std::string> plain = {"AutoContrast", "Equalize",  "Invert",   "Rotate",        "Posterize",
                                                 "Solarize",     "SolarizeAdd", "Color",  "Contrast",      "Brightness",
                                                 "Sharpness",    "ShearX",    "ShearY",   "TranslateXRel", "TranslateYRel"};
  static const std::vector<std::string> increasing = {
      "AutoContrast",         "Equalize",   "Invert",  "Rotate",        "PosterizeIncreasing",
      "SolarizeIncreasing",   "SolarizeAdd", "ColorIncreasing", "ContrastIncreasing", "BrightnessIncreasing",
      "SharpnessIncreasing",  "ShearX",     "ShearY",  "TranslateXRel", "TranslateYRel"};
  return config.increasing ? increasing : plain;
}

std::vector<AugmentStep> SampleRandAugment(const RandAugmentConfig& config, std::mt19937_64& rng) {
  const auto& ops = RandAugmentOps(config);
  std::uniform_int_distribution<size_t> pick(0, ops.size() - 1);
  std::uniform_real_distribution<double> u(0, 1);
  std::vector<AugmentStep> steps;
  std::vector<std::string> chosen;
  for (int i = 0; i < config.num_layers; ++i) chosen.push_back(ops[pick(rng)]);  // with replacement
  for (const auto& op : chosen) {
    if (u(rng) > 0.5) continue;  // each op applies with probability 0.5
    double magnitude = config.magnitude;
    if (config.magnitude_std > 0) magnitude = std::normal_distribution<double>(magnitude, config.magnitude_std)(rng);
    magnitude = std::clamp(magnitude, 0.0, kMaxLevel);
    steps.push_back({op, LevelToArg(Resolve(op), magnitude, rng)});
  }
  return steps;
}

namespace {

// The input region an op reads to compute `out` exactly: the same for pointwise ops, one pixel
// more for Sharpness's 3x3 filter, the cubic's 4x4 support around the mapped box for the affine
// ops, and the whole frame for the ops with whole-frame statistics.
AugmentRegion NeededInput(Op op, double arg, AugmentRegion out, int64_t w, int64_t h) {
  const AugmentRegion full{0, 0, w, h};
  if (out.x0 >= out.x1 || out.y0 >= out.y1) return out;
  if (op == Op::kAutoContrast || op == Op::kEqualize || op == Op::kContrast) return full;
  if (op == Op::kSharpness)
    return {std::max<int64_t>(0, out.x0 - 1), std::max<int64_t>(0, out.y0 - 1), std::min(w, out.x1 + 1), std::min(h, out.y1 + 1)};
  const auto m = augment::AffineOf(op, arg, w, h);
  if (!m) return out;
  double x_lo = 1e300, x_hi = -1e300, y_lo = 1e300, y_hi = -1e300;
  for (double xo : {out.x0 + 0.5, out.x1 - 0.5})
    for (double yo : {out.y0 + 0.5, out.y1 - 0.5}) {
      const double xi = (*m)[0] * xo + (*m)[1] * yo + (*m)[2] - 0.5, yi = (*m)[3] * xo + (*m)[4] * yo + (*m)[5] - 0.5;
      x_lo = std::min(x_lo, xi), x_hi = std::max(x_hi, xi), y_lo = std::min(y_lo, yi), y_hi = std::max(y_hi, yi);
    }
  auto clampi = [](double v, int64_t n) { return std::clamp<int64_t>(static_cast<int64_t>(v), 0, n); };
  return {clampi(std::floor(x_lo) - 1, w), clampi(std::floor(y_lo) - 1, h), clampi(std::floor(x_hi) + 3, w),
          clampi(std::floor(y_hi) + 3, h)};
}

}  // namespace

AugmentRegion AugmentInput(const std::vector<AugmentStep>& steps, AugmentRegion region, int64_t w, int64_t h) {
  AugmentRegion r{std::max<int64_t>(0, region.x0), std::max<int64_t>(0, region.y0), std::min(w, region.x1), std::min(h, region.y1)};
  for (size_t k = steps.size(); k-- > 0;) r = NeededInput(Resolve(steps[k].op).op, steps[k].arg, r, w, h);
  return r;
}

at::Tensor ApplyAugmentOps(const std::vector<AugmentStep>& steps, at::Tensor frames, AugmentRegion region,
                           bool vectorized) {
  TORCH_CHECK(frames.dim() == 4 && frames.size(3) == 3 && frames.scalar_type() == torch::kByte,
              "RandAugment expects uint8 frames [T,H,W,3]");
  std::vector<Op> ops;  // resolved once for the chain
  for (const auto& step : steps) ops.push_back(Resolve(step.op).op);
  // A tensor nobody else holds (the caller moved its only reference in) is worked on in place.
  const bool own = frames.is_contiguous() && frames.use_count() == 1 && frames.storage().use_count() == 1;
  auto out = own ? std::move(frames) : frames.contiguous().clone();
  const int64_t T = out.size(0), H = out.size(1), W = out.size(2);
  uint8_t* clip = out.data_ptr<uint8_t>();
  // Backwards from the region the caller reads: what each op must get right.
  std::vector<AugmentRegion> need(steps.size() + 1);
  need.back() = {std::max<int64_t>(0, region.x0), std::max<int64_t>(0, region.y0), std::min(W, region.x1), std::min(H, region.y1)};
  for (size_t k = steps.size(); k-- > 0;) need[k] = NeededInput(ops[k], steps[k].arg, need[k + 1], W, H);
  for (size_t k = 0; k < steps.size(); ++k) {
    if (const auto m = augment::AffineOf(ops[k], steps[k].arg, W, H)) {
      augment::AffineClip(clip, T, H, W, need[k], need[k + 1], *m, vectorized);
      continue;
    }
    for (int64_t t = 0; t < T; ++t) augment::ApplyPointwise(ops[k], steps[k].arg, {clip + t * H * W * 3, H, W, need[k + 1]});
  }
  return out;
}

at::Tensor ApplyAugmentOp(const AugmentStep& step, const at::Tensor& frames) {
  return ApplyAugmentOps({step}, frames, {0, 0, frames.size(2), frames.size(1)});
}

}  // namespace evl
