// RandAugment's pointwise and enhancement ops, as Pillow 9 computes them (ImageOps, ImageEnhance),
// on the region of a frame the caller reads. The row loops are written so the compiler vectorizes
// them (integer arithmetic, or float operations it neither reorders nor fuses): each is compiled
// twice, Foo for any x86-64 and FooAvx2 for AVX2 (the same bytes), and Use... picks one.
#include <algorithm>
#include <array>
#include <stdexcept>
#include <vector>

#include "augment_ops.h"
#include "cpu_features.h"

#ifdef EVL_X86
#define EVL_TARGET_AVX2 __attribute__((target("avx2")))
#else
#define EVL_TARGET_AVX2
#endif
#define EVL_INLINE __attribute__((always_inline)) inline

namespace evl {
namespace augment {
namespace {

bool UseAvx2() {
#ifdef EVL_X86
  return HaveAvx2();
#else
  return false;
#endif
}

using Lut = std::array<uint8_t, 256>;

// The region's bytes of row y: [first, last).
uint8_t* RowBegin(const Frame& f, int64_t y) { return f.p + (y * f.w + f.r.x0) * 3; }
int64_t RowBytes(const Frame& f) { return (f.r.x1 - f.r.x0) * 3; }

void ApplyLut(const Frame& f, const std::array<Lut, 3>& lut) {
  for (int64_t y = f.r.y0; y < f.r.y1; ++y) {
    uint8_t* px = RowBegin(f, y);
    for (int64_t i = 0; i < RowBytes(f); i += 3) {
      px[i] = lut[0][px[i]];
      px[i + 1] = lut[1][px[i + 1]];
      px[i + 2] = lut[2][px[i + 2]];
    }
  }
}

// --- Byte maps: one function of a byte, on every byte of the region.

struct InvertByte {
  uint8_t operator()(uint8_t v) const { return static_cast<uint8_t>(255 - v); }
};
struct PosterizeByte {
  uint8_t mask;
  uint8_t operator()(uint8_t v) const { return static_cast<uint8_t>(v & mask); }
};
struct SolarizeByte {
  int threshold;
  uint8_t operator()(uint8_t v) const { return static_cast<uint8_t>(v < threshold ? v : 255 - v); }
};
struct SolarizeAddByte {
  int add;
  uint8_t operator()(uint8_t v) const { return static_cast<uint8_t>(v < 128 ? std::min(255, v + add) : v); }
};

template <typename Map>
EVL_INLINE void MapBytesKernel(const Frame& f, Map map) {
  for (int64_t y = f.r.y0; y < f.r.y1; ++y) {
    uint8_t* px = RowBegin(f, y);
    const int64_t n = RowBytes(f);
    for (int64_t i = 0; i < n; ++i) px[i] = map(px[i]);
  }
}
template <typename Map>
void MapBytes(const Frame& f, Map map) { MapBytesKernel(f, map); }
template <typename Map>
EVL_TARGET_AVX2 void MapBytesAvx2(const Frame& f, Map map) { MapBytesKernel(f, map); }

template <typename Map>
void UseMapBytes(const Frame& f, Map map) {
  if (UseAvx2()) MapBytesAvx2(f, map);
  else MapBytes(f, map);
}

// --- Whole-frame statistics.

std::array<std::array<int64_t, 256>, 3> Histograms(const Frame& f) {
  std::array<std::array<int64_t, 256>, 3> h{};
  for (int64_t i = 0; i < f.h * f.w; ++i)
    for (int c = 0; c < 3; ++c) ++h[c][f.p[i * 3 + c]];
  return h;
}

// Each channel's lowest and highest value over the whole frame. 96 bytes are 32 pixels, so byte k
// of every 96-byte block is always channel k % 3: the compiler vectorizes the blocks' loop.
EVL_INLINE void ChannelRangeKernel(const Frame& f, int lo[3], int hi[3]) {
  uint8_t mn[96], mx[96];
  std::fill(mn, mn + 96, 255);
  std::fill(mx, mx + 96, 0);
  const int64_t n = f.h * f.w * 3, blocks = n / 96;
  for (int64_t b = 0; b < blocks; ++b) {
    const uint8_t* p = f.p + b * 96;
    for (int k = 0; k < 96; ++k) {
      mn[k] = std::min(mn[k], p[k]);
      mx[k] = std::max(mx[k], p[k]);
    }
  }
  for (int c = 0; c < 3; ++c) lo[c] = 255, hi[c] = 0;
  for (int k = 0; k < 96; ++k) lo[k % 3] = std::min<int>(lo[k % 3], mn[k]), hi[k % 3] = std::max<int>(hi[k % 3], mx[k]);
  for (int64_t i = blocks * 96; i < n; ++i) lo[i % 3] = std::min<int>(lo[i % 3], f.p[i]), hi[i % 3] = std::max<int>(hi[i % 3], f.p[i]);
}
void ChannelRange(const Frame& f, int lo[3], int hi[3]) { ChannelRangeKernel(f, lo, hi); }
EVL_TARGET_AVX2 void ChannelRangeAvx2(const Frame& f, int lo[3], int hi[3]) { ChannelRangeKernel(f, lo, hi); }

// ImageOps.autocontrast(cutoff=0): each band stretched from its lowest to its highest value (the
// first and last non-empty histogram bins, i.e. its minimum and maximum).
void AutoContrast(const Frame& f) {
  int lo[3], hi[3];
  if (UseAvx2()) ChannelRangeAvx2(f, lo, hi);
  else ChannelRange(f, lo, hi);
  std::array<Lut, 3> lut;
  for (int c = 0; c < 3; ++c) {
    for (int i = 0; i < 256; ++i) {
      if (hi[c] <= lo[c]) {
        lut[c][i] = static_cast<uint8_t>(i);
        continue;
      }
      const double scale = 255.0 / (hi[c] - lo[c]), offset = -lo[c] * scale;
      lut[c][i] = static_cast<uint8_t>(std::clamp(static_cast<int>(i * scale + offset), 0, 255));
    }
  }
  ApplyLut(f, lut);
}

// ImageOps.equalize: each band's cumulative histogram as the mapping.
void Equalize(const Frame& f) {
  const auto hist = Histograms(f);
  std::array<Lut, 3> lut;
  for (int c = 0; c < 3; ++c) {
    int64_t total = 0, last = 0, nonzero = 0;
    for (int i = 0; i < 256; ++i)
      if (hist[c][i]) total += hist[c][i], last = hist[c][i], ++nonzero;
    const int64_t step = (total - last) / 255;
    int64_t n = step / 2;
    for (int i = 0; i < 256; ++i) {
      if (nonzero <= 1 || step == 0) {
        lut[c][i] = static_cast<uint8_t>(i);
      } else {
        lut[c][i] = static_cast<uint8_t>(std::min<int64_t>(255, n / step));
        n += hist[c][i];
      }
    }
  }
  ApplyLut(f, lut);
}

// --- Enhancements: blends with a degenerate image.

// Pillow's "L" conversion (ITU-R 601-2 luma in 16-bit fixed point).
uint8_t Luma(const uint8_t* rgb) { return static_cast<uint8_t>((rgb[0] * 19595 + rgb[1] * 38470 + rgb[2] * 7471 + 0x8000) >> 16); }

// Image.blend(degenerate, img, factor) on n bytes: interpolation or extrapolation in float,
// truncated, clipped (v <= 0 gives 0 and v >= 255 gives 255 either way).
EVL_INLINE void BlendRowKernel(uint8_t* px, const float* degenerate, int64_t n, float alpha) {
  for (int64_t i = 0; i < n; ++i) {
    const float v = degenerate[i] + alpha * (static_cast<float>(px[i]) - degenerate[i]);
    px[i] = static_cast<uint8_t>(static_cast<int>(std::min(std::max(v, 0.0f), 255.0f)));
  }
}
void BlendRow(uint8_t* px, const float* degenerate, int64_t n, float alpha) { BlendRowKernel(px, degenerate, n, alpha); }
EVL_TARGET_AVX2 void BlendRowAvx2(uint8_t* px, const float* degenerate, int64_t n, float alpha) {
  BlendRowKernel(px, degenerate, n, alpha);
}

// ImageFilter.SMOOTH (3x3, centre 5, divisor 13) of the bytes [from, to) of a row whose original
// values are `cur`, with the original rows above and below. Pillow sums the nine products in float
// and truncates s + 0.5. In integers: S = the 3x3 sum plus 4 x the centre, and (2 S + 13) / 26. The
// same value: S / 13 + 0.5 is never within 1/26 of an integer (2 S + 13 is odd), far beyond the
// float sum's error (< 2e-4 here).
EVL_INLINE void SmoothRowKernel(const uint8_t* above, const uint8_t* cur, const uint8_t* below, int64_t from,
                                int64_t to, float* out) {
  for (int64_t i = from; i < to; ++i) {
    const int sum = 4 * cur[i] + above[i - 3] + above[i] + above[i + 3] + cur[i - 3] + cur[i] + cur[i + 3] +
                    below[i - 3] + below[i] + below[i + 3];
    out[i - from] = static_cast<float>(std::min(255, (2 * sum + 13) / 26));
  }
}
void SmoothRow(const uint8_t* above, const uint8_t* cur, const uint8_t* below, int64_t from, int64_t to, float* out) {
  SmoothRowKernel(above, cur, below, from, to, out);
}
EVL_TARGET_AVX2 void SmoothRowAvx2(const uint8_t* above, const uint8_t* cur, const uint8_t* below, int64_t from,
                                   int64_t to, float* out) {
  SmoothRowKernel(above, cur, below, from, to, out);
}

void UseBlendRow(uint8_t* px, const float* degenerate, int64_t n, float alpha) {
  if (UseAvx2()) BlendRowAvx2(px, degenerate, n, alpha);
  else BlendRow(px, degenerate, n, alpha);
}

// ImageEnhance.{Color, Contrast, Brightness}(img).enhance(factor): a blend with grey (luma), the
// mean luma or black, row by row over the region, never as a whole image.
void EnhanceTowardsGrey(const Frame& f, Op op, double factor) {
  const float alpha = static_cast<float>(factor);
  const int64_t n = RowBytes(f);
  float constant = 0;  // Brightness: black
  if (op == Op::kContrast) {
    int64_t sum = 0;  // over the whole frame: the region needs the whole input (NeededInput)
    for (int64_t i = 0; i < f.h * f.w; ++i) sum += Luma(f.p + i * 3);
    constant = static_cast<float>(static_cast<uint8_t>(static_cast<int>(static_cast<double>(sum) / (f.h * f.w) + 0.5)));
  }
  std::vector<float> d(n, constant);
  for (int64_t y = f.r.y0; y < f.r.y1; ++y) {
    uint8_t* px = RowBegin(f, y);
    if (op == Op::kColor)
      for (int64_t i = 0; i < n; i += 3) d[i] = d[i + 1] = d[i + 2] = static_cast<float>(Luma(px + i));
    UseBlendRow(px, d.data(), n, alpha);
  }
}

// ImageEnhance.Sharpness(img).enhance(factor): a blend with the SMOOTH-filtered image, its border
// pixels left as they are. Rows are overwritten top to bottom, so the original of the row above is
// kept aside (the row below is still original when a row is computed).
void Sharpness(const Frame& f, double factor) {
  const float alpha = static_cast<float>(factor);
  const int64_t n = RowBytes(f), row_bytes = f.w * 3;
  const bool avx2 = UseAvx2();
  std::vector<float> d(n);
  std::vector<uint8_t> above(row_bytes), cur(row_bytes);
  if (f.r.y0 > 0) std::copy_n(f.p + (f.r.y0 - 1) * row_bytes, row_bytes, above.data());
  const int64_t inner0 = std::max<int64_t>(f.r.x0, 1) * 3, inner1 = std::min<int64_t>(f.r.x1, f.w - 1) * 3;
  for (int64_t y = f.r.y0; y < f.r.y1; ++y) {
    const uint8_t* row = f.p + y * row_bytes;
    std::copy_n(row, row_bytes, cur.data());
    for (int64_t i = 0; i < n; ++i) d[i] = cur[f.r.x0 * 3 + i];  // the border keeps its value
    if (y > 0 && y + 1 < f.h && inner0 < inner1) {
      float* out = d.data() + (inner0 - f.r.x0 * 3);
      if (avx2) SmoothRowAvx2(above.data(), cur.data(), row + row_bytes, inner0, inner1, out);
      else SmoothRow(above.data(), cur.data(), row + row_bytes, inner0, inner1, out);
    }
    UseBlendRow(RowBegin(f, y), d.data(), n, alpha);
    std::swap(above, cur);
  }
}

}  // namespace

void ApplyPointwise(Op op, double arg, const Frame& f) {
  switch (op) {
    case Op::kAutoContrast: return AutoContrast(f);
    case Op::kEqualize: return Equalize(f);
    case Op::kInvert: return UseMapBytes(f, InvertByte{});
    case Op::kPosterize: {
      const int bits = static_cast<int>(arg);
      if (bits >= 8) return;
      return UseMapBytes(f, PosterizeByte{static_cast<uint8_t>(~((1 << (8 - bits)) - 1))});
    }
    case Op::kSolarize: return UseMapBytes(f, SolarizeByte{static_cast<int>(arg)});
    case Op::kSolarizeAdd: return UseMapBytes(f, SolarizeAddByte{static_cast<int>(arg)});
    case Op::kColor:
    case Op::kContrast:
    case Op::kBrightness: return EnhanceTowardsGrey(f, op, arg);
    case Op::kSharpness: return Sharpness(f, arg);
    default: throw std::logic_error("RandAugment: an affine op reached the pointwise kernels");
  }
}

}  // namespace augment
}  // namespace evl
