#include "resize_window.h"

#include <torch/torch.h>

#include <algorithm>
#include <vector>

#include "cpu_features.h"


namespace evl {
namespace {

// The two source positions and weights of each output position, as F.interpolate computes them.
// Column offsets are in bytes (index * 3) so the kernels add them to a row pointer directly.
struct Taps {
  std::vector<int32_t> i0, i1;
  std::vector<float> l0, l1;
};

Taps MakeTaps(int64_t in, int64_t out, int64_t first, int64_t count, int32_t unit, bool reverse) {
  const float scale = static_cast<float>(in) / static_cast<float>(out);
  Taps t;
  t.i0.resize(count), t.i1.resize(count), t.l0.resize(count), t.l1.resize(count);
  for (int64_t k = 0; k < count; ++k) {
    const int64_t pos = first + (reverse ? count - 1 - k : k);
    const float src = std::max(0.0f, scale * (static_cast<float>(pos) + 0.5f) - 0.5f);
    const int64_t i0 = static_cast<int64_t>(src);
    const float l1 = src - static_cast<float>(i0);
    t.i0[k] = static_cast<int32_t>(i0 * unit);
    t.i1[k] = static_cast<int32_t>((i0 + (i0 < in - 1 ? 1 : 0)) * unit);
    t.l0[k] = 1.0f - l1;
    t.l1[k] = l1;
  }
  return t;
}

// The kernels below compute every value with the same multiplies and adds in the same order, with
// no fused multiply-add (the AVX2 versions are compiled without FMA), so every version gives the
// same floats bit for bit; only how many values one instruction computes differs.

// One input row's horizontal taps for output columns [from, to), each channel a plane of w floats.
void HorizontalScalar(const uint8_t* row, const Taps& c, int64_t from, int64_t to, int64_t w, float* h) {
  for (int64_t x = from; x < to; ++x)
    for (int64_t ch = 0; ch < 3; ++ch)
      h[ch * w + x] = c.l0[x] * row[c.i0[x] + ch] + c.l1[x] * row[c.i1[x] + ch];
}

void VerticalScalar(const float* t, const float* b, float l0, float l1, float g, float o, int64_t w, float* dst) {
  for (int64_t x = 0; x < w; ++x) dst[x] = (l0 * t[x] + l1 * b[x]) * g + o;
}

#ifdef EVL_X86
// Eight columns at a time: one 4-byte gather per tap fetches a pixel's three channels (and a byte
// of the next pixel, ignored). `avail`: bytes readable from `row`; a block whose gather would read
// past them runs the scalar loop.
__attribute__((target("avx2"))) void HorizontalAvx2(const uint8_t* row, const Taps& c, int64_t w, int64_t avail,
                                                    float* h) {
  const __m256i byte = _mm256_set1_epi32(0xff);
  int64_t x = 0;
  for (; x + 8 <= w; x += 8) {
    const int64_t reach = std::max({c.i0[x], c.i1[x], c.i0[x + 7], c.i1[x + 7]}) + 4;
    if (reach > avail) {
      HorizontalScalar(row, c, x, x + 8, w, h);
      continue;
    }
    const __m256i g0 = _mm256_i32gather_epi32(reinterpret_cast<const int*>(row),
                                              _mm256_loadu_si256(reinterpret_cast<const __m256i*>(&c.i0[x])), 1);
    const __m256i g1 = _mm256_i32gather_epi32(reinterpret_cast<const int*>(row),
                                              _mm256_loadu_si256(reinterpret_cast<const __m256i*>(&c.i1[x])), 1);
    const __m256 l0 = _mm256_loadu_ps(&c.l0[x]), l1 = _mm256_loadu_ps(&c.l1[x]);
    for (int ch = 0; ch < 3; ++ch) {
      const __m256 a = _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srli_epi32(g0, 8 * ch), byte));
      const __m256 b = _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srli_epi32(g1, 8 * ch), byte));
      _mm256_storeu_ps(h + ch * w + x, _mm256_add_ps(_mm256_mul_ps(l0, a), _mm256_mul_ps(l1, b)));
    }
  }
  HorizontalScalar(row, c, x, w, w, h);
}

__attribute__((target("avx2"))) void VerticalAvx2(const float* t, const float* b, float l0, float l1, float g, float o,
                                                  int64_t w, float* dst) {
  const __m256 vl0 = _mm256_set1_ps(l0), vl1 = _mm256_set1_ps(l1), vg = _mm256_set1_ps(g), vo = _mm256_set1_ps(o);
  int64_t x = 0;
  for (; x + 8 <= w; x += 8) {
    const __m256 v = _mm256_add_ps(_mm256_mul_ps(vl0, _mm256_loadu_ps(t + x)), _mm256_mul_ps(vl1, _mm256_loadu_ps(b + x)));
    _mm256_storeu_ps(dst + x, _mm256_add_ps(_mm256_mul_ps(v, vg), vo));
  }
  for (; x < w; ++x) dst[x] = (l0 * t[x] + l1 * b[x]) * g + o;
}
#endif

}  // namespace

at::Tensor ResizeWindow(const at::Tensor& frames, int64_t out_h, int64_t out_w, const CropBox& box,
                        const std::array<float, 3>& mean, const std::array<float, 3>& std, bool mirror,
                        bool vectorized) {
  TORCH_CHECK(frames.dim() == 4 && frames.size(3) == 3 && frames.scalar_type() == torch::kByte,
              "ResizeWindow expects uint8 frames [N,H,W,3]");
  const auto src = frames.stride(3) == 1 && frames.stride(2) == 3 ? frames : frames.contiguous();
  const int64_t n = src.size(0), in_h = src.size(1), in_w = src.size(2);
  const int64_t frame_stride = src.stride(0), row_stride = src.stride(1);
  const uint8_t* s = src.data_ptr<uint8_t>();
  const auto* storage_end = static_cast<const uint8_t*>(src.storage().data()) + src.storage().nbytes();
  const Taps rows = MakeTaps(in_h, out_h, box.y, box.h, 1, false);
  const Taps cols = MakeTaps(in_w, out_w, box.x, box.w, 3, mirror);
  auto out = torch::empty({3, n, box.h, box.w}, torch::kFloat);
  float* d = out.data_ptr<float>();
  const int64_t plane = box.h * box.w;
  float gain[3], offset[3];  // (v / 255 - mean) / std as one multiply-add
  for (int ch = 0; ch < 3; ++ch) {
    gain[ch] = 1.0f / (255.0f * std[ch]);
    offset[ch] = -mean[ch] / std[ch];
  }
  auto vertical = VerticalScalar;
#ifdef EVL_X86
  const bool avx2 = vectorized && HaveAvx2();
  if (avx2) vertical = VerticalAvx2;
#endif
  // Horizontal taps once per input row (an upscaled window reads each row for about two output
  // rows), kept per channel so the vertical pass runs over contiguous floats.
  std::vector<float> cache[2] = {std::vector<float>(3 * box.w), std::vector<float>(3 * box.w)};
  int64_t cached[2] = {-1, -1};
  auto horizontal = [&](const uint8_t* frame, int64_t i) -> const float* {
    const int slot = cached[0] == i ? 0 : cached[1] == i ? 1 : -1;
    if (slot >= 0) return cache[slot].data();
    const int use = cached[0] < cached[1] ? 0 : 1;  // rows only move down: drop the upper one
    const uint8_t* row = frame + i * row_stride;
    float* h = cache[use].data();
#ifdef EVL_X86
    if (avx2)
      HorizontalAvx2(row, cols, box.w, storage_end - row, h);
    else
#endif
      HorizontalScalar(row, cols, 0, box.w, box.w, h);
    cached[use] = i;
    return h;
  };
  for (int64_t f = 0; f < n; ++f) {
    const uint8_t* frame = s + f * frame_stride;
    cached[0] = cached[1] = -1;
    for (int64_t y = 0; y < box.h; ++y) {
      const float* top = horizontal(frame, rows.i0[y]);
      const float* bottom = horizontal(frame, rows.i1[y]);
      for (int64_t ch = 0; ch < 3; ++ch)
        vertical(top + ch * box.w, bottom + ch * box.w, rows.l0[y], rows.l1[y], gain[ch], offset[ch], box.w,
                 d + (ch * n + f) * plane + y * box.w);
    }
  }
  return out;
}

}  // namespace evl
