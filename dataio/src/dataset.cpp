#include "evl/dataset.h"

#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include <torch/torch.h>

#include "evl/sampling.h"
#include "evl/video_reader.h"

namespace evl {
namespace {

// uint8 [T,H,W,3] -> normalized float [3,T,H,W].
torch::Tensor Normalize(const torch::Tensor& frames, const std::array<float, 3>& mean, const std::array<float, 3>& std) {
  auto m = torch::tensor({mean[0], mean[1], mean[2]}).view({3, 1, 1, 1});
  auto s = torch::tensor({std[0], std[1], std[2]}).view({3, 1, 1, 1});
  return (frames.permute({3, 0, 1, 2}).to(torch::kFloat).div_(255.0f) - m).div_(s);
}

// The window `box` of uint8 frames [N, H, W, 3] resized to out_h x out_w as F.interpolate(bilinear,
// align_corners=False) resizes (no antialias; source index max(0, (dst + 0.5) * in / out - 0.5)),
// normalized, as float [3, N, box.h, box.w]. Computing only the window skips the pixels the centre
// crop throws away; reading uint8 directly skips a float copy of every frame; and normalizing the
// result (bilinear weights sum to one) touches the cropped pixels only, once.
torch::Tensor ResizeWindow(const torch::Tensor& frames, int64_t out_h, int64_t out_w, const CropBox& box,
                           const std::array<float, 3>& mean, const std::array<float, 3>& std) {
  const int64_t n = frames.size(0), in_h = frames.size(1), in_w = frames.size(2);
  struct Tap {
    int64_t i0, i1;
    float l0, l1;
  };
  auto taps = [](int64_t in, int64_t out, int64_t first, int64_t count) {
    const float scale = static_cast<float>(in) / static_cast<float>(out);
    std::vector<Tap> t(count);
    for (int64_t k = 0; k < count; ++k) {
      const float src = std::max(0.0f, scale * (static_cast<float>(first + k) + 0.5f) - 0.5f);
      const int64_t i0 = static_cast<int64_t>(src);
      const float l1 = src - static_cast<float>(i0);
      t[k] = {i0, i0 + (i0 < in - 1 ? 1 : 0), 1.0f - l1, l1};
    }
    return t;
  };
  const auto rows = taps(in_h, out_h, box.y, box.h), cols = taps(in_w, out_w, box.x, box.w);
  auto out = torch::empty({3, n, box.h, box.w}, torch::kFloat);
  const auto src = frames.contiguous();
  const uint8_t* s = src.data_ptr<uint8_t>();
  float* d = out.data_ptr<float>();
  const int64_t plane = box.h * box.w;
  float gain[3], offset[3];  // (v / 255 - mean) / std as one multiply-add
  for (int ch = 0; ch < 3; ++ch) {
    gain[ch] = 1.0f / (255.0f * std[ch]);
    offset[ch] = -mean[ch] / std[ch];
  }
  // Horizontal taps once per input row (an upscaled window reads each row for about two output
  // rows), kept per channel so the vertical pass runs over contiguous floats and vectorizes. The
  // arithmetic is the same expression per value as doing both taps per output pixel.
  std::vector<float> cache[2] = {std::vector<float>(3 * box.w), std::vector<float>(3 * box.w)};
  int64_t cached[2] = {-1, -1};
  auto horizontal = [&](const uint8_t* frame, int64_t i) -> const float* {
    const int slot = cached[0] == i ? 0 : cached[1] == i ? 1 : -1;
    if (slot >= 0) return cache[slot].data();
    const int use = cached[0] < cached[1] ? 0 : 1;  // rows only move down: drop the upper one
    const uint8_t* row = frame + i * in_w * 3;
    float* h = cache[use].data();
    for (int64_t x = 0; x < box.w; ++x) {
      const Tap& c = cols[x];
      for (int64_t ch = 0; ch < 3; ++ch) h[ch * box.w + x] = c.l0 * row[c.i0 * 3 + ch] + c.l1 * row[c.i1 * 3 + ch];
    }
    cached[use] = i;
    return h;
  };
  for (int64_t f = 0; f < n; ++f) {
    const uint8_t* frame = s + f * in_h * in_w * 3;
    cached[0] = cached[1] = -1;
    for (int64_t y = 0; y < box.h; ++y) {
      const Tap& r = rows[y];
      const float* top = horizontal(frame, r.i0);
      const float* bottom = horizontal(frame, r.i1);
      for (int64_t ch = 0; ch < 3; ++ch) {
        float* dst = d + (ch * n + f) * plane + y * box.w;
        const float* t = top + ch * box.w;
        const float* b = bottom + ch * box.w;
        const float l0 = r.l0, l1 = r.l1, g = gain[ch], o = offset[ch];
        int64_t x = 0;
#ifdef __SSE2__
        // Four at a time, the same multiplies and adds in the same order as the scalar line below
        // (no fused multiply-add), so the same values.
        const __m128 vl0 = _mm_set1_ps(l0), vl1 = _mm_set1_ps(l1), vg = _mm_set1_ps(g), vo = _mm_set1_ps(o);
        for (; x + 4 <= box.w; x += 4) {
          const __m128 v = _mm_add_ps(_mm_mul_ps(vl0, _mm_loadu_ps(t + x)), _mm_mul_ps(vl1, _mm_loadu_ps(b + x)));
          _mm_storeu_ps(dst + x, _mm_add_ps(_mm_mul_ps(v, vg), vo));
        }
#endif
        for (; x < box.w; ++x) dst[x] = (l0 * t[x] + l1 * b[x]) * g + o;
      }
    }
  }
  return out;
}

// Runs `load` once more if the reader found that a file's decoded frames differ from what its
// packets promised: the frame indices were drawn from a wrong count, and the reader now knows the
// true one (evl/video_reader.h).
template <typename F>
torch::Tensor DrawingAgainIfTheOrderChanged(F load) {
  try {
    return load();
  } catch (const FrameOrderChanged&) {
    return load();
  }
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
  return DrawingAgainIfTheOrderChanged([&] { return LoadTestViewsOnce(path, o, reader); });
}

VideoClipDataset::VideoClipDataset(const ClipDatasetOptions& options)
    : o_(options), entries_(ReadVideoList(options.list_path, options.data_root, options.num_classes)) {
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
  return DrawingAgainIfTheOrderChanged([&] { return LoadOnce(index, step, reader); });
}

at::Tensor VideoClipDataset::LoadOnce(int64_t index, uint64_t step, VideoReader& reader) const {
  const VideoEntry& e = entries_.at(index);
  reader.Open(e.path);
  const int64_t len = reader.info().num_frames;
  std::mt19937_64 rng = SampleRng(o_.seed, step, static_cast<uint64_t>(index));
  if (o_.train) {
    torch::Tensor frames = reader.Decode(TrainFrameIndices(len, rng));  // uint8 [T,H,W,3]
    // RandAugment on the decoded frames, before normalisation and the crop, as officially; one
    // draw for the clip, the same op on every frame. The draws happen in the official order (the
    // ops, then the crop box), but the box is known before the ops run, so they, and the
    // normalisation, compute only the pixels inside it: the same values, less work.
    const std::vector<AugmentStep> steps =
        rand_augment_ ? SampleRandAugment(rand_augment_config_, rng) : std::vector<AugmentStep>{};
    const CropBox box = RandomResizedCropBox(frames.size(1), frames.size(2), o_.min_scale, 1.0, 3.0 / 4.0, 4.0 / 3.0, rng);
    if (!steps.empty()) frames = ApplyAugmentOps(steps, frames, {box.x, box.y, box.x + box.w, box.y + box.h});
    // One box for every frame of the clip, resized like the official F.interpolate call (normalize,
    // then bilinear), straight from the uint8 box with the normalization folded in: the same values
    // up to float rounding, without a float copy of the box.
    auto clip = ResizeWindow(frames.narrow(1, box.y, box.h).narrow(2, box.x, box.w), o_.crop_size, o_.crop_size,
                             CropBox{0, 0, o_.crop_size, o_.crop_size}, o_.mean, o_.std);  // [3,T,crop,crop]
    if (o_.mirror && std::uniform_int_distribution<int>(0, 1)(rng)) clip = clip.flip({3});
    return clip.contiguous();
  }
  return LoadTestViews(e.path, o_, reader);
}

}  // namespace evl
