#include "evl/dataset.h"

#include <torch/torch.h>

#include "evl/sampling.h"
#include "evl/video_reader.h"
#include "resize_window.h"

namespace evl {
namespace {

// uint8 [T,H,W,3] -> normalized float [3,T,H,W].
torch::Tensor Normalize(const torch::Tensor& frames, const std::array<float, 3>& mean, const std::array<float, 3>& std) {
  auto m = torch::tensor({mean[0], mean[1], mean[2]}).view({3, 1, 1, 1});
  auto s = torch::tensor({std[0], std[1], std[2]}).view({3, 1, 1, 1});
  return (frames.permute({3, 0, 1, 2}).to(torch::kFloat).div_(255.0f) - m).div_(s);
}

torch::Tensor LoadTestViewsOnce(const std::string& path, const ClipDatasetOptions& o_, VideoReader& reader) {
  reader.Open(path);
  const int64_t len = reader.info().num_frames;
  // Every frame the views need, decoded once.
  auto views = TestTemporalViews(len, o_.num_frames, o_.sampling_rate, o_.num_temporal_views);
  std::vector<int64_t> all;
  for (const auto& v : views) all.insert(all.end(), v.begin(), v.end());
  std::sort(all.begin(), all.end());
  all.erase(std::unique(all.begin(), all.end()), all.end());
  int64_t h = 0, w = 0;
  ShortSideResize(reader.info().height, reader.info().width, o_.spatial_size, &h, &w);
  const auto crops = TestSpatialCrops(h, w, o_.crop_size, o_.num_spatial_views);
  // Each crop of the frames resized to h x w, [3, N, crop, crop], normalized.
  std::vector<torch::Tensor> cropped;
  if (o_.swscale_eval_resize) {
    // Resized by swscale while converting; its bilinear filter antialiases, so the pixels differ
    // from the official ones (docs/data.md).
    const auto decoded = Normalize(reader.Decode(all, static_cast<int>(h), static_cast<int>(w)), o_.mean, o_.std);
    for (const auto& box : crops) cropped.push_back(decoded.narrow(2, box.y, box.h).narrow(3, box.x, box.w));
  } else {
    // The official transform: native-size RGB, float, normalize, F.interpolate(bilinear,
    // align_corners=False), crop. Bilinear weights sum to one, so normalizing after the resize
    // gives the same values up to float rounding; and only the cropped window is computed.
    const auto frames = reader.Decode(all);
    for (const auto& box : crops) cropped.push_back(ResizeWindow(frames, h, w, box, o_.mean, o_.std));
  }
  // [V, 3, T, crop, crop]: for each spatial crop, every temporal view (the official order).
  const auto& first = cropped.front();
  auto out = torch::empty({static_cast<int64_t>(cropped.size() * views.size()), 3, o_.num_frames, first.size(2),
                           first.size(3)},
                          torch::kFloat);
  int64_t k = 0;
  for (const auto& c : cropped) {
    for (const auto& v : views) {
      for (int64_t t = 0; t < static_cast<int64_t>(v.size()); ++t)
        out[k].select(1, t).copy_(c.select(1, std::lower_bound(all.begin(), all.end(), v[t]) - all.begin()));
      ++k;
    }
  }
  return out;
}

}  // namespace

at::Tensor LoadTestViews(const std::string& path, const ClipDatasetOptions& o, VideoReader& reader) {
  return OnceMoreIfTheOrderChanged([&] { return LoadTestViewsOnce(path, o, reader); });
}

VideoClipDataset::VideoClipDataset(const ClipDatasetOptions& options)
    : VideoClipDataset(options, ReadVideoList(options.list_path, options.data_root, options.num_classes)) {}

VideoClipDataset::VideoClipDataset(const ClipDatasetOptions& options, std::vector<VideoEntry> entries)
    : o_(options), entries_(std::move(entries)) {
  if (o_.train && !o_.auto_augment.empty()) {
    rand_augment_config_ = ParseRandAugment(o_.auto_augment);
    rand_augment_ = true;
  }
}

std::vector<int64_t> VideoClipDataset::TrainFrameIndices(int64_t len, std::mt19937_64& rng) const {
  if (o_.tsn_sampling) return TsnTrainIndices(len, o_.num_frames, rng);
  const int64_t starts = DenseStartRange(len, o_.num_frames, o_.sampling_rate);
  const int64_t start = starts > 0 ? std::uniform_int_distribution<int64_t>(0, starts - 1)(rng) : 0;
  return DenseTrainIndices(len, o_.num_frames, o_.sampling_rate, start);
}

at::Tensor VideoClipDataset::Load(int64_t index, uint64_t step, VideoReader& reader) const {
  return OnceMoreIfTheOrderChanged([&] { return LoadOnce(index, step, reader); });
}

at::Tensor VideoClipDataset::LoadOnce(int64_t index, uint64_t step, VideoReader& reader) const {
  const VideoEntry& e = entries_.at(index);
  reader.Open(e.path);
  const int64_t len = reader.info().num_frames;
  std::mt19937_64 rng = SampleRng(o_.seed, step, static_cast<uint64_t>(index));
  if (o_.train) {
    const std::vector<int64_t> indices = TrainFrameIndices(len, rng);
    // RandAugment on the decoded frames, before normalisation and the crop, as officially; one
    // draw for the clip, the same op on every frame. The draws happen in the official order (the
    // ops, then the crop box), but all of them before decoding: the frames' size is known from the
    // file, and the box says which pixels matter. The ops, the normalisation and even the RGB
    // conversion then compute only those (and the rows the ops read to compute them): the same
    // values, less work.
    const std::vector<AugmentStep> steps =
        rand_augment_ ? SampleRandAugment(rand_augment_config_, rng) : std::vector<AugmentStep>{};
    const int64_t h = reader.info().height, w = reader.info().width;
    const CropBox box = RandomResizedCropBox(h, w, o_.min_scale, 1.0, 3.0 / 4.0, 4.0 / 3.0, rng);
    const AugmentRegion keep{box.x, box.y, box.x + box.w, box.y + box.h};
    const AugmentRegion read = AugmentInput(steps, keep, w, h);
    torch::Tensor frames = reader.Decode(indices, 0, 0, {read.y0, read.y1});  // uint8 [T,H,W,3]
    if (!steps.empty()) frames = ApplyAugmentOps(steps, std::move(frames), keep);
    // One box for every frame of the clip, resized like the official F.interpolate call (normalize,
    // then bilinear), straight from the uint8 box with the normalization folded in: the same values
    // up to float rounding, without a float copy of the box. The flip (drawn last, as officially)
    // is the resize's columns taken in reverse: the same values as flipping the result.
    const bool mirror = o_.mirror && std::uniform_int_distribution<int>(0, 1)(rng);
    auto clip = ResizeWindow(frames.narrow(1, box.y, box.h).narrow(2, box.x, box.w), o_.crop_size, o_.crop_size,
                             CropBox{0, 0, o_.crop_size, o_.crop_size}, o_.mean, o_.std, mirror);  // [3,T,crop,crop]
    return clip;
  }
  return LoadTestViews(e.path, o_, reader);
}

}  // namespace evl
