#include "evl/sampling.h"

#include <algorithm>
#include <cmath>

namespace evl {

int64_t PyRound(double x) { return static_cast<int64_t>(std::nearbyint(x)); }

int64_t DenseStartRange(int64_t len, int num_frames, int rate) {
  if (static_cast<int64_t>(rate) * (num_frames - 1) + 1 >= len) return 0;
  return len - static_cast<int64_t>(rate) * (num_frames - 1);
}

std::vector<int64_t> DenseTrainIndices(int64_t len, int num_frames, int rate, int64_t start) {
  std::vector<int64_t> idx;
  if (DenseStartRange(len, num_frames, rate) == 0) {
    for (int i = 0; i < num_frames; ++i) {
      const int64_t f = static_cast<int64_t>(i) * rate;
      idx.push_back(f < len ? f : idx.back());
    }
    return idx;
  }
  for (int i = 0; i < num_frames; ++i) idx.push_back(start + static_cast<int64_t>(i) * rate);
  return idx;
}

std::vector<int64_t> TsnTrainIndices(int64_t len, int num_frames, std::mt19937_64& rng) {
  const double seg = static_cast<double>(len - 1) / num_frames;
  std::vector<int64_t> idx;
  for (int i = 0; i < num_frames; ++i) {
    const int64_t a = PyRound(seg * i), b = PyRound(seg * (i + 1));
    idx.push_back(std::uniform_int_distribution<int64_t>(a, b)(rng));
  }
  return idx;
}

std::vector<std::vector<int64_t>> TestTemporalViews(int64_t len, int num_frames, int rate, int num_views) {
  const int64_t seg_len = static_cast<int64_t>(num_frames - 1) * rate + 1;
  const int64_t padded = std::max(len, seg_len);
  const int64_t slide = padded - seg_len;
  std::vector<std::vector<int64_t>> views;
  for (int v = 0; v < num_views; ++v) {
    const int64_t st = num_views == 1 ? slide / 2 : PyRound(static_cast<double>(slide) / (num_views - 1) * v);
    std::vector<int64_t> idx;
    for (int i = 0; i < num_frames; ++i) idx.push_back(std::min(st + static_cast<int64_t>(i) * rate, len - 1));
    views.push_back(std::move(idx));
  }
  return views;
}

void ShortSideResize(int64_t h, int64_t w, int64_t size, int64_t* out_h, int64_t* out_w) {
  if (h < w) {
    *out_h = size;
    *out_w = w * size / h;
  } else {
    *out_w = size;
    *out_h = h * size / w;
  }
}

std::vector<CropBox> TestSpatialCrops(int64_t h, int64_t w, int64_t size, int num_views) {
  if (num_views == 1) return {CropBox{(h - size) / 2, (w - size) / 2, size, size}};
  std::vector<CropBox> crops;
  const int64_t margin = std::max(h, w) - size;
  for (int64_t st : {int64_t{0}, margin / 2, margin}) {
    if (h > w)
      crops.push_back({st, (w - size) / 2, size, size});
    else
      crops.push_back({(h - size) / 2, st, size, size});
  }
  return crops;
}

CropBox RandomResizedCropBox(int64_t h, int64_t w, double min_scale, double max_scale, double min_ratio,
                             double max_ratio, std::mt19937_64& rng) {
  const double area = static_cast<double>(h) * w;
  std::uniform_real_distribution<double> uscale(min_scale, max_scale);
  std::uniform_real_distribution<double> ulogr(std::log(min_ratio), std::log(max_ratio));
  for (int attempt = 0; attempt < 10; ++attempt) {
    const double target = area * uscale(rng);
    const double ratio = std::exp(ulogr(rng));
    const int64_t cw = PyRound(std::sqrt(target * ratio)), ch = PyRound(std::sqrt(target / ratio));
    if (cw > 0 && ch > 0 && cw <= w && ch <= h) {
      const int64_t y = std::uniform_int_distribution<int64_t>(0, h - ch)(rng);
      const int64_t x = std::uniform_int_distribution<int64_t>(0, w - cw)(rng);
      return {y, x, ch, cw};
    }
  }
  // Fallback: the whole frame clipped to the ratio range, centred.
  const double in_ratio = static_cast<double>(w) / h;
  int64_t cw = w, ch = h;
  if (in_ratio < min_ratio) ch = PyRound(w / min_ratio);
  else if (in_ratio > max_ratio) cw = PyRound(h * max_ratio);
  return {(h - ch) / 2, (w - cw) / 2, ch, cw};
}

std::mt19937_64 SampleRng(uint64_t seed, uint64_t step, uint64_t sample_index) {
  std::seed_seq seq{static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32), static_cast<uint32_t>(step),
                    static_cast<uint32_t>(step >> 32), static_cast<uint32_t>(sample_index),
                    static_cast<uint32_t>(sample_index >> 32), 0x45564cu};
  return std::mt19937_64(seq);
}

}  // namespace evl
