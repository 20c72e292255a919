// RandAugment's affine ops (Rotate, ShearX/Y, TranslateX/YRel) as Pillow 9's Image.transform
// (AFFINE, BICUBIC, fillcolor 128) computes them, on the region of the clip the caller reads: a
// scalar version (AffineFrames) and an AVX2 one that computes eight frames at once
// (AffineFrames8Avx2, over a frame-interleaved copy of the region it reads), with the same bytes.
#include <algorithm>
#include <cmath>
#include <vector>

#include "augment_ops.h"
#include "cpu_features.h"

namespace evl {
namespace augment {
namespace {

constexpr uint8_t kFill = 128;

uint8_t Clip8(double v) { return v <= 0.0 ? 0 : v >= 255.0 ? 255 : static_cast<uint8_t>(v); }

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
void AffineFrames(const uint8_t* src, uint8_t* clip, int64_t t0, int64_t t1, int64_t h, int64_t w,
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

thread_local std::vector<uint8_t> g_scratch8;  // AffineClip's eight interleaved frames

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

}  // namespace

size_t AffineScratchBytes() { return g_scratch8.capacity(); }

void AffineClip(uint8_t* clip, int64_t T, int64_t h, int64_t w, AugmentRegion in, AugmentRegion out,
                const std::array<double, 6>& m, bool vectorized) {
  const int64_t frame = h * w * 3;
  int64_t t = 0;
#ifdef EVL_X86
  if (vectorized && HaveAvx2() && T >= 8) {
    // Only `in` is filled. Kept per thread: a fresh 2 MB buffer per call costs page faults. Sized
    // to this clip: one 1080p source must not leave ~50 MB behind in every decode thread.
    std::vector<uint8_t>& src8 = g_scratch8;
    const size_t need = static_cast<size_t>(frame) * 8;
    if (src8.size() < need || src8.size() > 4 * need) std::vector<uint8_t>(need).swap(src8);
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
    AffineFrames(src.data(), clip, t, T, h, w, out, m);
  }
}

std::optional<std::array<double, 6>> AffineOf(Op op, double arg, int64_t w, int64_t h) {
  switch (op) {
    case Op::kRotate: return RotationMatrix(arg, w, h);
    case Op::kShearX: return std::array<double, 6>{1, arg, 0, 0, 1, 0};
    case Op::kShearY: return std::array<double, 6>{1, 0, 0, arg, 1, 0};
    case Op::kTranslateXRel: return std::array<double, 6>{1, 0, arg * w, 0, 1, 0};
    case Op::kTranslateYRel: return std::array<double, 6>{1, 0, 0, 0, 1, arg * h};
    default: return std::nullopt;
  }
}

}  // namespace augment
}  // namespace evl
