// Which frames and crops a sample uses — the official EVL sampling rules as pure functions.
// Random choices are taken as arguments (drawn by the caller from a per-sample generator), so the
// rules themselves are deterministic and testable against the official algorithm.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

namespace evl {

// Python's round(): halves to even (the official code's index arithmetic relies on it).
int64_t PyRound(double x);

// Training, dense: num_frames indices `rate` apart from a random start in
// [0, len - rate*(num_frames-1)); a video too short for that takes 0, rate, 2*rate, ... and repeats
// the last index that exists.
int64_t DenseStartRange(int64_t len, int num_frames, int rate);  // number of valid starts (0: short video)
std::vector<int64_t> DenseTrainIndices(int64_t len, int num_frames, int rate, int64_t start);

// Training, TSN: num_frames segments of (len-1)/num_frames; one index drawn uniformly in each
// segment's [round(s*i), round(s*(i+1))].
std::vector<int64_t> TsnTrainIndices(int64_t len, int num_frames, std::mt19937_64& rng);

// Test views: num_temporal_views clips evenly spaced over the video (one view: the centre clip);
// indices past the end repeat the last frame.
std::vector<std::vector<int64_t>> TestTemporalViews(int64_t len, int num_frames, int rate, int num_views);

struct CropBox {
  int64_t y = 0, x = 0, h = 0, w = 0;
};

// Short side resized to `size` keeping the aspect ratio (official integer arithmetic).
void ShortSideResize(int64_t h, int64_t w, int64_t size, int64_t* out_h, int64_t* out_w);

// Spatial test crops of a frame already resized so its short side is `size`: one centre crop, or
// three (start, centre, end) along the long side.
std::vector<CropBox> TestSpatialCrops(int64_t h, int64_t w, int64_t size, int num_views);

// Inception-style random resized crop box (scale and ratio ranges as torchvision), with the
// centre-crop fallback after 10 tries.
CropBox RandomResizedCropBox(int64_t h, int64_t w, double min_scale, double max_scale, double min_ratio,
                             double max_ratio, std::mt19937_64& rng);

// The generator for one sample: a pure function of (seed, epoch-or-step, global sample index),
// so augmentation does not depend on ranks, threads or order.
std::mt19937_64 SampleRng(uint64_t seed, uint64_t step, uint64_t sample_index);

}  // namespace evl
