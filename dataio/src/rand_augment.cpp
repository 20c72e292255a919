#include "evl/rand_augment.h"

#include <torch/torch.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <memory>
#include <regex>
#include <stdexcept>

#include "cpu_features.h"


namespace evl {
namespace {

constexpr double kMaxLevel = 10.0;
constexpr uint8_t kFill = 128;

using Lut = std::array<uint8_t, 256>;

uint8_t Clip8(double v) { return v <= 0.0 ? 0 : v >= 255.0 ? 255 : static_cast<uint8_t>(v); }

// One frame: H x W x 3 bytes, and the region r whose output pixels an op must compute (the rest
// is left as it is: the caller does not read it).
struct Frame {
  uint8_t* p;
  int64_t h, w;
  AugmentRegion r;
};

// The kernels below are plain loops the compiler vectorizes (integer arithmetic, or float
// operations it neither reorders nor fuses: -ffp-contract=off), so every version gives the same
// bytes. EVL_AVX2_TWIN compiles a kernel's body a second time for AVX2 and picks one at run time
// (not target_clones: its load-time resolver runs before ThreadSanitizer's runtime and crashes it).
#ifdef EVL_X86
#define EVL_AVX2_TWIN(name, params, args)                                    \
  __attribute__((target("avx2"))) void name##Avx2 params { name##Body args; } \
  void name params {                                                          \
    if (HaveAvx2())                                                           \
      name##Avx2 args;                                                        \
    else                                                                      \
      name##Body args;                                                        \
  }
#else
#define EVL_AVX2_TWIN(name, params, args) \
  void name params { name##Body args; }
#endif

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

// A pointwise op on every byte of the region, as a plain loop over each row's bytes.
template <typename Op>
__attribute__((always_inline)) inline void EachByte(const Frame& f, Op op) {
  for (int64_t y = f.r.y0; y < f.r.y1; ++y) {
    uint8_t* px = RowBegin(f, y);
    const int64_t n = RowBytes(f);
    for (int64_t i = 0; i < n; ++i) px[i] = op(px[i]);
  }
}

__attribute__((always_inline)) inline void InvertBody(const Frame& f) {
  EachByte(f, [](uint8_t v) { return static_cast<uint8_t>(255 - v); });
}
EVL_AVX2_TWIN(Invert, (const Frame& f), (f))
__attribute__((always_inline)) inline void PosterizeBody(const Frame& f, uint8_t mask) {
  EachByte(f, [mask](uint8_t v) { return static_cast<uint8_t>(v & mask); });
}
EVL_AVX2_TWIN(Posterize, (const Frame& f, uint8_t mask), (f, mask))
__attribute__((always_inline)) inline void SolarizeBody(const Frame& f, int threshold) {
  EachByte(f, [threshold](uint8_t v) { return static_cast<uint8_t>(v < threshold ? v : 255 - v); });
}
EVL_AVX2_TWIN(Solarize, (const Frame& f, int threshold), (f, threshold))
__attribute__((always_inline)) inline void SolarizeAddBody(const Frame& f, int add) {
  EachByte(f, [add](uint8_t v) { return static_cast<uint8_t>(v < 128 ? std::min(255, v + add) : v); });
}
EVL_AVX2_TWIN(SolarizeAdd, (const Frame& f, int add), (f, add))

std::array<std::array<int64_t, 256>, 3> Histograms(const Frame& f) {
  std::array<std::array<int64_t, 256>, 3> h{};
  for (int64_t i = 0; i < f.h * f.w; ++i)
    for (int c = 0; c < 3; ++c) ++h[c][f.p[i * 3 + c]];
  return h;
}

// Each channel's lowest and highest value over the whole frame. 96 bytes are 32 pixels, so byte k
// of every 96-byte block is always channel k % 3: the compiler vectorizes the blocks' loop.
__attribute__((always_inline)) inline void ChannelRangeBody(const Frame& f, int lo[3], int hi[3]) {
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
EVL_AVX2_TWIN(ChannelRange, (const Frame& f, int lo[3], int hi[3]), (f, lo, hi))

// ImageOps.autocontrast(cutoff=0): each band stretched from its lowest to its highest value (the
// first and last non-empty histogram bins, i.e. its minimum and maximum).
void AutoContrast(const Frame& f) {
  int lo[3], hi[3];
  ChannelRange(f, lo, hi);
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

// Pillow's "L" conversion (ITU-R 601-2 luma in 16-bit fixed point).
uint8_t Luma(const uint8_t* rgb) { return static_cast<uint8_t>((rgb[0] * 19595 + rgb[1] * 38470 + rgb[2] * 7471 + 0x8000) >> 16); }

// Image.blend(degenerate, img, factor) on n bytes: interpolation or extrapolation in float,
// truncated, clipped (v <= 0 gives 0 and v >= 255 gives 255 either way). The compiler vectorizes
// it without reordering or fusing the float operations (-ffp-contract=off), so every version gives
// the same bytes.
__attribute__((always_inline)) inline void BlendRowBody(uint8_t* px, const float* degenerate, int64_t n,
                                                                float alpha) {
  for (int64_t i = 0; i < n; ++i) {
    const float v = degenerate[i] + alpha * (static_cast<float>(px[i]) - degenerate[i]);
    px[i] = static_cast<uint8_t>(static_cast<int>(std::min(std::max(v, 0.0f), 255.0f)));
  }
}
EVL_AVX2_TWIN(BlendRow, (uint8_t* px, const float* degenerate, int64_t n, float alpha), (px, degenerate, n, alpha))

// ImageFilter.SMOOTH (3x3, centre 5, divisor 13) of the bytes [from, to) of a row whose original
// values are `cur`, with the original rows above and below. Pillow sums the nine products in float
// and truncates s + 0.5. In integers: S = the 3x3 sum plus 4 x the centre, and (2 S + 13) / 26. The
// same value: S / 13 + 0.5 is never within 1/26 of an integer (2 S + 13 is odd), far beyond the
// float sum's error (< 2e-4 here).
__attribute__((always_inline)) inline void SmoothRowBody(const uint8_t* above, const uint8_t* cur,
                                                                 const uint8_t* below, int64_t from, int64_t to,
                                                                 float* out) {
  for (int64_t i = from; i < to; ++i) {
    const int sum = 4 * cur[i] + above[i - 3] + above[i] + above[i + 3] + cur[i - 3] + cur[i] + cur[i + 3] +
                    below[i - 3] + below[i] + below[i + 3];
    out[i - from] = static_cast<float>(std::min(255, (2 * sum + 13) / 26));
  }
}
EVL_AVX2_TWIN(SmoothRow, (const uint8_t* above, const uint8_t* cur, const uint8_t* below, int64_t from, int64_t to, float* out), (above, cur, below, from, to, out))

// ImageEnhance.{Color, Contrast, Brightness, Sharpness}(img).enhance(factor): a blend with a
// degenerate image — grey (luma), the mean luma, black, the SMOOTH-filtered image (its border
// pixels left as they are) — computed row by row over the region, never as a whole image.
void Enhance(const Frame& f, const std::string& kind, double factor) {
  const float alpha = static_cast<float>(factor);
  const int64_t n = RowBytes(f), row_bytes = f.w * 3;
  std::vector<float> d(n);
  if (kind == "Color" || kind == "Brightness" || kind == "Contrast") {
    float constant = 0;  // Brightness: black
    if (kind == "Contrast") {
      int64_t sum = 0;  // over the whole frame: the region needs the whole input (NeededInput)
      for (int64_t i = 0; i < f.h * f.w; ++i) sum += Luma(f.p + i * 3);
      constant = static_cast<float>(static_cast<uint8_t>(static_cast<int>(static_cast<double>(sum) / (f.h * f.w) + 0.5)));
    }
    std::fill(d.begin(), d.end(), constant);
    for (int64_t y = f.r.y0; y < f.r.y1; ++y) {
      uint8_t* px = RowBegin(f, y);
      if (kind == "Color")
        for (int64_t i = 0; i < n; i += 3) d[i] = d[i + 1] = d[i + 2] = static_cast<float>(Luma(px + i));
      BlendRow(px, d.data(), n, alpha);
    }
    return;
  }
  // Sharpness. Rows are overwritten top to bottom, so the original of the row above is kept aside
  // (the row below is still original when a row is computed).
  std::vector<uint8_t> above(row_bytes), cur(row_bytes);
  if (f.r.y0 > 0) std::copy_n(f.p + (f.r.y0 - 1) * row_bytes, row_bytes, above.data());
  const int64_t inner0 = std::max<int64_t>(f.r.x0, 1) * 3, inner1 = std::min<int64_t>(f.r.x1, f.w - 1) * 3;
  for (int64_t y = f.r.y0; y < f.r.y1; ++y) {
    const uint8_t* row = f.p + y * row_bytes;
    std::copy_n(row, row_bytes, cur.data());
    for (int64_t i = 0; i < n; ++i) d[i] = cur[f.r.x0 * 3 + i];  // the border keeps its value
    if (y > 0 && y + 1 < f.h && inner0 < inner1)
      SmoothRow(above.data(), cur.data(), row + row_bytes, inner0, inner1, d.data() + (inner0 - f.r.x0 * 3));
    BlendRow(RowBegin(f, y), d.data(), n, alpha);
    std::swap(above, cur);
  }
}

// Image.transform(AFFINE, (a..f), BICUBIC, fillcolor=128): output pixel centre (x+.5, y+.5) reads
// input (a x' + b y' + c, d x' + e y' + f) with Pillow's cubic (a = -1) and clamped neighbours;
// outside the input it keeps the fill. The geometry depends only on the pixel, not on the frame.
struct AffineTaps {
  bool inside;
  int64_t xs[4], ys[4];  // byte offsets of the 4x4 neighbours' columns (x * 3) and rows (y * w * 3)
  double dx, dy;
};

inline AffineTaps AffineAt(int64_t x, int64_t y, int64_t h, int64_t w, const std::array<double, 6>& m) {
  AffineTaps g;
  const double xo = x + 0.5, yo = y + 0.5;
  double xin = m[0] * xo + m[1] * yo + m[2], yin = m[3] * xo + m[4] * yo + m[5];
  g.inside = !(xin < 0.0 || xin >= w || yin < 0.0 || yin >= h);
  if (!g.inside) return g;
  xin -= 0.5;
  yin -= 0.5;
  const int64_t xi = static_cast<int64_t>(std::floor(xin)), yi = static_cast<int64_t>(std::floor(yin));
  g.dx = xin - xi;
  g.dy = yin - yi;
  for (int k = 0; k < 4; ++k) {
    g.xs[k] = std::min<int64_t>(std::max<int64_t>(xi - 1 + k, 0), w - 1) * 3;
    g.ys[k] = std::min<int64_t>(std::max<int64_t>(yi - 1 + k, 0), h - 1) * w * 3;
  }
  return g;
}

// Shears and translations keep one coordinate: its offset is then exactly 0, the cubic along it
// returns its second value unchanged (p1 + 0 * ...), and one cubic per channel is left to compute
// instead of five. Same result, bit for bit.
enum class AffineKind { kGeneral, kKeepsY, kKeepsX };

AffineKind KindOf(const std::array<double, 6>& m) {
  if (m[3] == 0 && m[4] == 1 && m[5] == 0) return AffineKind::kKeepsY;
  if (m[0] == 1 && m[1] == 0 && m[2] == 0) return AffineKind::kKeepsX;
  return AffineKind::kGeneral;
}

double Cubic(double v1, double v2, double v3, double v4, double d) {
  const double p1 = v2, p2 = -v1 + v3, p3 = 2 * (v1 - v2) + v3 - v4, p4 = -v1 + v2 - v3 + v4;
  return p1 + d * (p2 + d * (p3 + d * p4));
}

// Frames [t0, t1) of the clip [T, H, W, 3], output region r, reading `src` (a copy of the clip).
void AffineFramesScalar(const uint8_t* src, uint8_t* clip, int64_t t0, int64_t t1, int64_t h, int64_t w,
                        AugmentRegion r, const std::array<double, 6>& m) {
  const int64_t frame = h * w * 3;
  const AffineKind kind = KindOf(m);
  for (int64_t y = r.y0; y < r.y1; ++y)
    for (int64_t x = r.x0; x < r.x1; ++x) {
      const AffineTaps g = AffineAt(x, y, h, w, m);
      const int64_t at = (y * w + x) * 3;
      for (int64_t t = t0; t < t1; ++t) {
        uint8_t* out = clip + t * frame + at;
        if (!g.inside) {
          out[0] = out[1] = out[2] = kFill;
          continue;
        }
        const uint8_t* in = src + t * frame;
        for (int c = 0; c < 3; ++c) {
          if (kind == AffineKind::kKeepsY) {
            const uint8_t* row = in + g.ys[1] + c;
            out[c] = Clip8(Cubic(row[g.xs[0]], row[g.xs[1]], row[g.xs[2]], row[g.xs[3]], g.dx));
          } else if (kind == AffineKind::kKeepsX) {
            const uint8_t* col = in + g.xs[1] + c;
            out[c] = Clip8(Cubic(col[g.ys[0]], col[g.ys[1]], col[g.ys[2]], col[g.ys[3]], g.dy));
          } else {
            double rows[4];
            for (int k = 0; k < 4; ++k) {
              const uint8_t* row = in + g.ys[k] + c;
              rows[k] = Cubic(row[g.xs[0]], row[g.xs[1]], row[g.xs[2]], row[g.xs[3]], g.dx);
            }
            out[c] = Clip8(Cubic(rows[0], rows[1], rows[2], rows[3], g.dy));
          }
        }
      }
    }
}

#ifdef EVL_X86
// Eight frames at once, four doubles per AVX2 register: the same operations in the same order as
// Cubic and Clip8 on every lane (no fused multiply-add: this file is compiled with
// -ffp-contract=off and the target has no FMA), so the same bytes as the scalar code. The frames
// are read from `src8`, which holds frames [t0, t0 + 8) interleaved: the value at byte offset i of
// frame t0 + j lies at src8[i * 8 + j], so one 8-byte load gives a tap for all eight frames.
struct Lanes {
  __m256d lo, hi;
};

__attribute__((target("avx2"), always_inline)) inline Lanes Load8(const uint8_t* p) {
  const __m256i v = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
  return {_mm256_cvtepi32_pd(_mm256_castsi256_si128(v)), _mm256_cvtepi32_pd(_mm256_extracti128_si256(v, 1))};
}

__attribute__((target("avx2"), always_inline)) inline __m256d Cubic4(__m256d v1, __m256d v2, __m256d v3, __m256d v4,
                                                                     __m256d d) {
  // -v1 + v3 is v3 - v1 exactly (IEEE subtraction is addition of the negation), and so on.
  const __m256d p2 = _mm256_sub_pd(v3, v1);
  const __m256d p3 = _mm256_sub_pd(_mm256_add_pd(_mm256_mul_pd(_mm256_set1_pd(2.0), _mm256_sub_pd(v1, v2)), v3), v4);
  const __m256d p4 = _mm256_add_pd(_mm256_sub_pd(_mm256_sub_pd(v2, v1), v3), v4);
  return _mm256_add_pd(v2, _mm256_mul_pd(d, _mm256_add_pd(p2, _mm256_mul_pd(d, _mm256_add_pd(p3, _mm256_mul_pd(d, p4))))));
}

__attribute__((target("avx2"), always_inline)) inline Lanes Cubic8(const Lanes& a, const Lanes& b, const Lanes& c,
                                                                   const Lanes& e, __m256d d) {
  return {Cubic4(a.lo, b.lo, c.lo, e.lo, d), Cubic4(a.hi, b.hi, c.hi, e.hi, d)};
}

// Clip8 on eight lanes: clamped to [0, 255], truncated, packed to bytes.
__attribute__((target("avx2"), always_inline)) inline uint64_t Clip8x8(const Lanes& v) {
  const __m256d zero = _mm256_setzero_pd(), top = _mm256_set1_pd(255.0);
  const __m128i lo = _mm256_cvttpd_epi32(_mm256_min_pd(_mm256_max_pd(v.lo, zero), top));
  const __m128i hi = _mm256_cvttpd_epi32(_mm256_min_pd(_mm256_max_pd(v.hi, zero), top));
  const __m128i bytes = _mm_packus_epi16(_mm_packus_epi32(lo, hi), _mm_setzero_si128());
  return static_cast<uint64_t>(_mm_cvtsi128_si64(bytes));
}

__attribute__((target("avx2"))) void AffineFrames8Avx2(const uint8_t* src8, uint8_t* clip, int64_t t0, int64_t h,
                                                       int64_t w, AugmentRegion r, const std::array<double, 6>& m) {
  const int64_t frame = h * w * 3;
  const AffineKind kind = KindOf(m);
  for (int64_t y = r.y0; y < r.y1; ++y)
    for (int64_t x = r.x0; x < r.x1; ++x) {
      const AffineTaps g = AffineAt(x, y, h, w, m);
      uint64_t px[3];
      if (!g.inside) {
        px[0] = px[1] = px[2] = 0x0101010101010101ull * kFill;
      } else {
        const __m256d dx = _mm256_set1_pd(g.dx), dy = _mm256_set1_pd(g.dy);
        for (int c = 0; c < 3; ++c) {
          const uint8_t* s = src8 + c * 8;
          if (kind == AffineKind::kKeepsY) {
            const uint8_t* row = s + g.ys[1] * 8;
            px[c] = Clip8x8(Cubic8(Load8(row + g.xs[0] * 8), Load8(row + g.xs[1] * 8), Load8(row + g.xs[2] * 8),
                                   Load8(row + g.xs[3] * 8), dx));
          } else if (kind == AffineKind::kKeepsX) {
            const uint8_t* col = s + g.xs[1] * 8;
            px[c] = Clip8x8(Cubic8(Load8(col + g.ys[0] * 8), Load8(col + g.ys[1] * 8), Load8(col + g.ys[2] * 8),
                                   Load8(col + g.ys[3] * 8), dy));
          } else {
            Lanes rows[4];
            for (int k = 0; k < 4; ++k) {
              const uint8_t* row = s + g.ys[k] * 8;
              rows[k] = Cubic8(Load8(row + g.xs[0] * 8), Load8(row + g.xs[1] * 8), Load8(row + g.xs[2] * 8),
                               Load8(row + g.xs[3] * 8), dx);
            }
            px[c] = Clip8x8(Cubic8(rows[0], rows[1], rows[2], rows[3], dy));
          }
        }
      }
      uint8_t* out = clip + t0 * frame + (y * w + x) * 3;
      for (int j = 0; j < 8; ++j, out += frame)
        for (int c = 0; c < 3; ++c) out[c] = static_cast<uint8_t>(px[c] >> (8 * j));
    }
}

// Bytes [b0, b1) of eight frames `frame` bytes apart, interleaved: byte i of frame j goes to
// out[i * 8 + j]. Sixteen bytes at a time as an 8 x 16 byte transpose (three rounds of unpacks).
void Interleave8(const uint8_t* first, int64_t frame, int64_t b0, int64_t b1, uint8_t* out) {
  int64_t i = b0;
  for (; i + 16 <= b1; i += 16) {
    __m128i a[8], u[8], v[8];
    for (int j = 0; j < 8; ++j) a[j] = _mm_loadu_si128(reinterpret_cast<const __m128i*>(first + j * frame + i));
    for (int j = 0; j < 8; j += 2) {  // bytes of frame pairs
      u[j] = _mm_unpacklo_epi8(a[j], a[j + 1]);
      u[j + 1] = _mm_unpackhi_epi8(a[j], a[j + 1]);
    }
    for (int j = 0; j < 8; j += 4)  // 4-frame groups: bytes 0-3, 4-7, 8-11, 12-15
      for (int k = 0; k < 2; ++k) {
        v[j + 2 * k] = _mm_unpacklo_epi16(u[j + k], u[j + k + 2]);
        v[j + 2 * k + 1] = _mm_unpackhi_epi16(u[j + k], u[j + k + 2]);
      }
    for (int k = 0; k < 4; ++k) {  // all eight frames: two bytes per register
      _mm_storeu_si128(reinterpret_cast<__m128i*>(out + (i + 4 * k) * 8), _mm_unpacklo_epi32(v[k], v[k + 4]));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(out + (i + 4 * k + 2) * 8), _mm_unpackhi_epi32(v[k], v[k + 4]));
    }
  }
  for (; i < b1; ++i)
    for (int j = 0; j < 8; ++j) out[i * 8 + j] = first[j * frame + i];
}
#endif

// Every frame of a clip [T, H, W, 3]: output region `out`, which reads input region `in`.
void AffineClip(uint8_t* clip, int64_t T, int64_t h, int64_t w, AugmentRegion in, AugmentRegion out,
                const std::array<double, 6>& m, bool vectorized) {
  const int64_t frame = h * w * 3;
  int64_t t = 0;
#ifdef EVL_X86
  if (vectorized && HaveAvx2() && T >= 8) {
    // Only `in` is filled. Kept per thread: a fresh 2 MB buffer per call costs page faults.
    thread_local std::vector<uint8_t> src8;
    if (src8.size() < static_cast<size_t>(frame) * 8) src8.resize(static_cast<size_t>(frame) * 8);
    for (; t + 8 <= T; t += 8) {
      for (int64_t y = in.y0; y < in.y1; ++y) Interleave8(clip + t * frame, frame, (y * w + in.x0) * 3, (y * w + in.x1) * 3, src8.data());
      AffineFrames8Avx2(src8.data(), clip, t, h, w, out, m);
    }
  }
#else
  (void)in;
  (void)vectorized;
#endif
  if (t < T) {
    const std::vector<uint8_t> src(clip, clip + T * frame);
    AffineFramesScalar(src.data(), clip, t, T, h, w, out, m);
  }
}

// Image.rotate(degrees, BICUBIC, fillcolor): counter-clockwise about the centre, same size.
std::array<double, 6> RotationMatrix(double degrees, int64_t w, int64_t h) {
  const double angle = -degrees * M_PI / 180.0;
  auto r15 = [](double v) { return std::round(v * 1e15) / 1e15; };
  std::array<double, 6> m = {r15(std::cos(angle)), r15(std::sin(angle)), 0.0, r15(-std::sin(angle)), r15(std::cos(angle)), 0.0};
  const double cx = w / 2.0, cy = h / 2.0;
  m[2] = m[0] * -cx + m[1] * -cy + m[2] + cx;
  m[5] = m[3] * -cx + m[4] * -cy + m[5] + cy;
  return m;
}

double RandomlyNegate(double v, std::mt19937_64& rng) {
  return std::uniform_real_distribution<double>(0, 1)(rng) > 0.5 ? -v : v;
}

// The official level-to-argument functions.
double LevelToArg(const std::string& op, double level, std::mt19937_64& rng) {
  if (op == "Rotate") return RandomlyNegate(level / kMaxLevel * 30.0, rng);
  if (op == "Posterize") return static_cast<int>(level / kMaxLevel * 4);
  if (op == "PosterizeIncreasing") return 4 - static_cast<int>(level / kMaxLevel * 4);
  if (op == "Solarize") return static_cast<int>(level / kMaxLevel * 256);
  if (op == "SolarizeIncreasing") return 256 - static_cast<int>(level / kMaxLevel * 256);
  if (op == "SolarizeAdd") return static_cast<int>(level / kMaxLevel * 110);
  if (op == "Color" || op == "Contrast" || op == "Brightness" || op == "Sharpness") return level / kMaxLevel * 1.8 + 0.1;
  if (op.size() > 10 && op.compare(op.size() - 10, 10, "Increasing") == 0)  // Color/Contrast/Brightness/Sharpness
    return 1.0 + RandomlyNegate(level / kMaxLevel * 0.9, rng);
  if (op == "ShearX" || op == "ShearY") return RandomlyNegate(level / kMaxLevel * 0.3, rng);
  if (op == "TranslateXRel" || op == "TranslateYRel") return RandomlyNegate(level / kMaxLevel * 0.45, rng);
  return 0;  // AutoContrast, Equalize, Invert
}

std::string BaseName(const std::string& op) {
  const std::string inc = "Increasing";
  return op.size() > inc.size() && op.compare(op.size() - inc.size(), inc.size(), inc) == 0
             ? op.substr(0, op.size() - inc.size())
             : op;
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
    steps.push_back({op, LevelToArg(op, magnitude, rng)});
  }
  return steps;
}

namespace {

// The affine map an op applies (output pixel centre -> input position), if it is one.
bool AffineOf(const std::string& base, double arg, int64_t w, int64_t h, std::array<double, 6>* m) {
  if (base == "Rotate") *m = RotationMatrix(arg, w, h);
  else if (base == "ShearX") *m = {1, arg, 0, 0, 1, 0};
  else if (base == "ShearY") *m = {1, 0, 0, arg, 1, 0};
  else if (base == "TranslateXRel") *m = {1, 0, arg * w, 0, 1, 0};
  else if (base == "TranslateYRel") *m = {1, 0, 0, 0, 1, arg * h};
  else return false;
  return true;
}

// The input region an op reads to compute `out` exactly: the same for pointwise ops, one pixel
// more for Sharpness's 3x3 filter, the cubic's 4x4 support around the mapped box for the affine
// ops, and the whole frame for the ops with whole-frame statistics.
AugmentRegion NeededInput(const AugmentStep& step, AugmentRegion out, int64_t w, int64_t h) {
  const AugmentRegion full{0, 0, w, h};
  if (out.x0 >= out.x1 || out.y0 >= out.y1) return out;
  const std::string base = BaseName(step.op);
  if (base == "AutoContrast" || base == "Equalize" || base == "Contrast") return full;
  if (base == "Sharpness")
    return {std::max<int64_t>(0, out.x0 - 1), std::max<int64_t>(0, out.y0 - 1), std::min(w, out.x1 + 1), std::min(h, out.y1 + 1)};
  std::array<double, 6> m;
  if (!AffineOf(base, step.arg, w, h, &m)) return out;
  double x_lo = 1e300, x_hi = -1e300, y_lo = 1e300, y_hi = -1e300;
  for (double xo : {out.x0 + 0.5, out.x1 - 0.5})
    for (double yo : {out.y0 + 0.5, out.y1 - 0.5}) {
      const double xi = m[0] * xo + m[1] * yo + m[2] - 0.5, yi = m[3] * xo + m[4] * yo + m[5] - 0.5;
      x_lo = std::min(x_lo, xi), x_hi = std::max(x_hi, xi), y_lo = std::min(y_lo, yi), y_hi = std::max(y_hi, yi);
    }
  auto clampi = [](double v, int64_t n) { return std::clamp<int64_t>(static_cast<int64_t>(v), 0, n); };
  return {clampi(std::floor(x_lo) - 1, w), clampi(std::floor(y_lo) - 1, h), clampi(std::floor(x_hi) + 3, w),
          clampi(std::floor(y_hi) + 3, h)};
}

void ApplyToFrame(const AugmentStep& step, const std::string& base, const Frame& f) {
  if (base == "AutoContrast") {
    AutoContrast(f);
  } else if (base == "Equalize") {
    Equalize(f);
  } else if (base == "Invert") {
    Invert(f);
  } else if (base == "Posterize") {
    const int bits = static_cast<int>(step.arg);
    if (bits >= 8) return;
    Posterize(f, static_cast<uint8_t>(~((1 << (8 - bits)) - 1)));
  } else if (base == "Solarize") {
    Solarize(f, static_cast<int>(step.arg));
  } else if (base == "SolarizeAdd") {
    SolarizeAdd(f, static_cast<int>(step.arg));
  } else if (base == "Color" || base == "Contrast" || base == "Brightness" || base == "Sharpness") {
    Enhance(f, base, step.arg);
  } else {
    throw std::invalid_argument("RandAugment: unknown op \"" + step.op + "\"");
  }
}

}  // namespace

AugmentRegion AugmentInput(const std::vector<AugmentStep>& steps, AugmentRegion region, int64_t w, int64_t h) {
  AugmentRegion r{std::max<int64_t>(0, region.x0), std::max<int64_t>(0, region.y0), std::min(w, region.x1), std::min(h, region.y1)};
  for (size_t k = steps.size(); k-- > 0;) r = NeededInput(steps[k], r, w, h);
  return r;
}

at::Tensor ApplyAugmentOps(const std::vector<AugmentStep>& steps, at::Tensor frames, AugmentRegion region,
                           bool vectorized) {
  TORCH_CHECK(frames.dim() == 4 && frames.size(3) == 3 && frames.scalar_type() == torch::kByte,
              "RandAugment expects uint8 frames [T,H,W,3]");
  // A tensor nobody else holds (the caller moved its only reference in) is worked on in place.
  const bool own = frames.is_contiguous() && frames.use_count() == 1 && frames.storage().use_count() == 1;
  auto out = own ? std::move(frames) : frames.contiguous().clone();
  const int64_t T = out.size(0), H = out.size(1), W = out.size(2);
  // Backwards from the region the caller reads: what each op must get right.
  std::vector<AugmentRegion> need(steps.size() + 1);
  need.back() = {std::max<int64_t>(0, region.x0), std::max<int64_t>(0, region.y0), std::min(W, region.x1), std::min(H, region.y1)};
  for (size_t k = steps.size(); k-- > 0;) need[k] = NeededInput(steps[k], need[k + 1], W, H);
  for (size_t k = 0; k < steps.size(); ++k) {
    const std::string base = BaseName(steps[k].op);
    std::array<double, 6> m;
    if (AffineOf(base, steps[k].arg, W, H, &m)) {
      AffineClip(out.data_ptr<uint8_t>(), T, H, W, need[k], need[k + 1], m, vectorized);
      continue;
    }
    for (int64_t t = 0; t < T; ++t)
      ApplyToFrame(steps[k], base, Frame{out.data_ptr<uint8_t>() + t * H * W * 3, H, W, need[k + 1]});
  }
  return out;
}

at::Tensor ApplyAugmentOp(const AugmentStep& step, const at::Tensor& frames) {
  return ApplyAugmentOps({step}, frames, {0, 0, frames.size(2), frames.size(1)});
}

}  // namespace evl
