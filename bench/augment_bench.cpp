// What each RandAugment op costs on the training path, vectorized against scalar, on real decoded
// clips: `evl_augment_bench LIST DATA_ROOT [CLIPS=96]`. Each clip is decoded once (the ViT-B/16
// 8x16 sampling at native size); every op then runs on the region a random resized crop keeps, as
// the training path runs it, and the drawn chains of rand-m7-n4-mstd0.5-inc1 run as drawn.
// Prints ms per clip and the ratio; decoding is not timed.
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "evl/rand_augment.h"
#include "evl/sampling.h"
#include "evl/video_list.h"
#include "evl/video_reader.h"

namespace {

using Clock = std::chrono::steady_clock;

struct Clip {
  torch::Tensor frames;  // uint8 [8, H, W, 3]
  evl::AugmentRegion box;
};

// ms per clip of `run` over all clips, best of three passes (this shared VM varies between runs).
template <typename F>
double MsPerClip(const std::vector<Clip>& clips, const F& run) {
  double best = 1e300;
  for (int pass = 0; pass < 3; ++pass) {
    const auto t0 = Clock::now();
    for (size_t i = 0; i < clips.size(); ++i) run(i, clips[i]);
    best = std::min(best, std::chrono::duration<double, std::milli>(Clock::now() - t0).count() / clips.size());
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s LIST DATA_ROOT [CLIPS]\n", argv[0]);
    return 2;
  }
  torch::set_num_threads(1);
  const auto entries = evl::ReadVideoList(argv[1], argv[2], 1 << 30);
  const size_t want = argc > 3 ? std::stoul(argv[3]) : 96;
  std::vector<Clip> clips;
  evl::VideoReader reader;
  std::mt19937_64 rng(1);
  for (size_t i = 0; clips.size() < want; ++i) {
    reader.Open(entries[i % entries.size()].path);
    const int64_t len = reader.info().num_frames, starts = evl::DenseStartRange(len, 8, 16);
    const int64_t start = starts > 0 ? static_cast<int64_t>(rng() % starts) : 0;
    auto frames = reader.Decode(evl::DenseTrainIndices(len, 8, 16, start));
    const auto b = evl::RandomResizedCropBox(frames.size(1), frames.size(2), 0.08, 1.0, 3.0 / 4.0, 4.0 / 3.0, rng);
    clips.push_back({frames, {b.x, b.y, b.x + b.w, b.y + b.h}});
  }
  std::printf("%zu clips of 8 frames, %lldx%lld; ms per clip (best of 3 passes), one thread\n", clips.size(),
              static_cast<long long>(clips[0].frames.size(2)), static_cast<long long>(clips[0].frames.size(1)));
  // `vectorized` = false switches the hand-written AVX2 kernels (the affine ops) to their scalar
  // twins; the other ops are plain loops the compiler vectorizes, alike in both columns.
  std::printf("(scalar: the affine ops' scalar code; the other ops are compiler-vectorized in both columns)\n");
  std::printf("%-24s %10s %10s %8s\n", "op", "scalar", "vectorized", "ratio");
  const std::vector<evl::AugmentStep> ops = {
      {"AutoContrast", 0}, {"Equalize", 0},       {"Invert", 0},          {"Rotate", 21},       {"PosterizeIncreasing", 2},
      {"SolarizeIncreasing", 100}, {"SolarizeAdd", 77}, {"ColorIncreasing", 1.6}, {"ContrastIncreasing", 0.4},
      {"BrightnessIncreasing", 1.5}, {"SharpnessIncreasing", 1.6}, {"ShearX", 0.21}, {"ShearY", -0.21},
      {"TranslateXRel", 0.3}, {"TranslateYRel", -0.3}};
  auto row = [&](const std::string& name, const std::function<std::vector<evl::AugmentStep>(size_t)>& steps) {
    const double s = MsPerClip(clips, [&](size_t i, const Clip& c) { evl::ApplyAugmentOps(steps(i), c.frames, c.box, false); });
    const double v = MsPerClip(clips, [&](size_t i, const Clip& c) { evl::ApplyAugmentOps(steps(i), c.frames, c.box, true); });
    std::printf("%-24s %10.3f %10.3f %7.2fx\n", name.c_str(), s, v, s / v);
  };
  row("(none: the copy)", [](size_t) { return std::vector<evl::AugmentStep>{}; });
  for (const auto& op : ops) row(op.op, [&](size_t) { return std::vector<evl::AugmentStep>{op}; });
  const auto config = evl::ParseRandAugment("rand-m7-n4-mstd0.5-inc1");
  std::vector<std::vector<evl::AugmentStep>> drawn;
  std::mt19937_64 draw(7);
  for (size_t i = 0; i < clips.size(); ++i) drawn.push_back(evl::SampleRandAugment(config, draw));
  row("drawn chains (m7 n4)", [&](size_t i) { return drawn[i]; });
  return 0;
}
