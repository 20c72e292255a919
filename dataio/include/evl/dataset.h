// Video clip datasets: a list of videos plus the official EVL sampling and transforms, producing
// normalized clips [3, T, S, S] (training) or test views [V, 3, T, S, S] (evaluation).
#pragma once

#include <array>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "evl/rand_augment.h"
#include "evl/video_list.h"

namespace at {
class Tensor;
}

namespace evl {

class VideoReader;

struct ClipDatasetOptions {
  std::string list_path, data_root;
  int num_classes = 400;
  int num_frames = 8;
  int sampling_rate = 16;
  bool tsn_sampling = false;
  int crop_size = 224;            // the backbone's input size
  int spatial_size = 224;         // eval: short side before the spatial crops
  int num_temporal_views = 3;     // eval
  int num_spatial_views = 1;      // eval
  bool swscale_eval_resize = false;  // eval: resize in swscale while decoding (faster, not official pixels)
  std::array<float, 3> mean{0.48145466f, 0.4578275f, 0.40821073f};
  std::array<float, 3> std{0.26862954f, 0.26130258f, 0.27577711f};
  bool mirror = false;            // train: horizontal flip with p = 0.5 (the official loader never flips)
  std::string auto_augment;       // train: RandAugment spec ("rand-m7-n4-mstd0.5-inc1"), empty: none
  double min_scale = 0.08;        // train: random resized crop area range [min_scale, 1]
  uint64_t seed = 0;
  bool train = true;
};


// The test views of one video file (the eval path of VideoClipDataset::Load): [V, 3, T, S, S].
at::Tensor LoadTestViews(const std::string& path, const ClipDatasetOptions& options, VideoReader& reader);

class VideoClipDataset {
 public:
  // Reads the list (throws DataError naming file:line); checks auto_augment (std::invalid_argument).
  explicit VideoClipDataset(const ClipDatasetOptions& options);
  // Over entries already read (options.list_path only names them).
  VideoClipDataset(const ClipDatasetOptions& options, std::vector<VideoEntry> entries);
  int64_t size() const { return static_cast<int64_t>(entries_.size()); }
  const VideoEntry& entry(int64_t i) const { return entries_.at(static_cast<size_t>(i)); }
  const ClipDatasetOptions& options() const { return o_; }

  // Decodes and transforms sample `index` with the randomness of (seed, step, index). Throws
  // DataError (naming the file) if the video cannot be used. Train: [3,T,S,S]; eval: [V,3,T,S,S]
  // with V = spatial x temporal views, ordered as the official code does (for each spatial crop,
  // every temporal view).
  at::Tensor Load(int64_t index, uint64_t step, VideoReader& reader) const;

  // The training frame indices for a video of `len` frames: the first draw Load makes from the
  // sample's generator (dense or TSN). For benchmarks that decode only what a clip needs.
  std::vector<int64_t> TrainFrameIndices(int64_t len, std::mt19937_64& rng) const;

 private:
  at::Tensor LoadOnce(int64_t index, uint64_t step, VideoReader& reader) const;

  ClipDatasetOptions o_;
  std::vector<VideoEntry> entries_;
  bool rand_augment_ = false;
  RandAugmentConfig rand_augment_config_;
};

}  // namespace evl
