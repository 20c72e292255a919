#include "evl/synth.h"

#include <xmmintrin.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>

#include "evl/video_list.h"
#include "evl/video_writer.h"

namespace evl {

void RenderSynthFrame(int label, int classes, int t, uint64_t video_seed, int width, int height,
                      std::vector<uint8_t>* rgb) {
  rgb->assign(static_cast<size_t>(width) * height * 3, 0);
  std::mt19937_64 rng(video_seed);
  std::uniform_int_distribution<int> byte(0, 255);
  // Static background noise, the same in every frame of the video.
  for (size_t i = 0; i < rgb->size(); ++i) (*rgb)[i] = static_cast<uint8_t>(40 + byte(rng) / 4);
  const int side = std::max(4, std::min(width, height - kCodeRows) / 3);
  const int area_h = height - kCodeRows;
  const double x0 = byte(rng) % width, y0 = byte(rng) % area_h;
  uint8_t c1[3], c2[3];
  for (int c = 0; c < 3; ++c) {
    c1[c] = static_cast<uint8_t>(150 + byte(rng) % 100);
    c2[c] = static_cast<uint8_t>(byte(rng) % 90);
  }
  const double angle = 2 * M_PI * label / classes, speed = 1.5;
  const double cx = x0 + std::cos(angle) * speed * t, cy = y0 + std::sin(angle) * speed * t;
  for (int dy = 0; dy < side; ++dy)
    for (int dx = 0; dx < side; ++dx) {
      const int x = ((static_cast<int>(std::floor(cx)) + dx) % width + width) % width;
      const int y = kCodeRows + ((static_cast<int>(std::floor(cy)) + dy) % area_h + area_h) % area_h;
      const uint8_t* col = ((dx / 4 + dy / 4) % 2) ? c1 : c2;
      std::copy(col, col + 3, rgb->data() + (static_cast<size_t>(y) * width + x) * 3);
    }
  const int block = width / kCodeBits;
  for (int b = 0; b < kCodeBits; ++b) {
    const uint8_t v = ((t >> b) & 1) ? 255 : 0;
    for (int y = 0; y < kCodeRows; ++y)
      for (int x = b * block; x < (b + 1) * block; ++x)
        for (int c = 0; c < 3; ++c) (*rgb)[(static_cast<size_t>(y) * width + x) * 3 + c] = v;
  }
}

int ReadFrameCode(const uint8_t* rgb, int width, int height) {
  (void)height;
  const int block = width / kCodeBits;
  int code = 0;
  for (int b = 0; b < kCodeBits; ++b) {
    int sum = 0, n = 0;
    for (int y = 2; y < kCodeRows - 2; ++y)
      for (int x = b * block + 1; x < (b + 1) * block - 1; ++x) {
        const uint8_t* p = rgb + (static_cast<size_t>(y) * width + x) * 3;
        sum += p[0] + p[1] + p[2];
        n += 3;
      }
    if (n && sum / n > 127) code |= 1 << b;
  }
  return code;
}

namespace {

// Encoders compute rate control in floating point; a caller that enabled flush-to-zero or another
// rounding mode (numeric libraries do) would change their decisions and so the bytes. Encode under
// the default SSE control word, restored afterwards.
class DefaultFloatEnvironment {
 public:
  DefaultFloatEnvironment() : saved_(_mm_getcsr()) { _mm_setcsr(0x1F80); }
  ~DefaultFloatEnvironment() { _mm_setcsr(saved_); }

 private:
  unsigned saved_;
};

}  // namespace

void WriteSynthDataset(const SynthOptions& o) {
  DefaultFloatEnvironment fenv;
  if (o.classes < 2) throw DataError("synth: --classes must be >= 2");
  if (o.width % 2 || o.height % 2 || o.width < 2 * kCodeBits || o.height < 2 * kCodeRows)
    throw DataError("synth: --size must be even and at least " + std::to_string(2 * kCodeBits) + "x" +
                    std::to_string(2 * kCodeRows));
  const std::string vdir = o.out_dir + "/videos";
  std::error_code ec;
  std::filesystem::create_directories(vdir, ec);
  if (ec) throw DataError(vdir + ": cannot create the directory (" + ec.message() + ")");
  std::ofstream train(o.out_dir + "/train.txt"), val(o.out_dir + "/val.txt");
  if (!train || !val) throw DataError(o.out_dir + ": cannot write dataset lists");
  VideoWriterOptions wo;
  wo.codec = o.codec;
  wo.width = o.width;
  wo.height = o.height;
  wo.gop = o.gop;
  wo.bframes = o.bframes;
  std::vector<uint8_t> rgb;
  const int val_every = o.val_fraction > 0 ? std::max(2, static_cast<int>(std::lround(1.0 / o.val_fraction))) : 0;
  for (int v = 0; v < o.videos; ++v) {
    const int label = v % o.classes;
    char name[32];
    std::snprintf(name, sizeof name, "%05d.mp4", v);
    const uint64_t video_seed = o.seed * 1000003ULL + static_cast<uint64_t>(v) * 7919ULL + 1;
    {
      VideoWriter w(vdir + "/" + name, wo);
      for (int t = 0; t < o.frames; ++t) {
        RenderSynthFrame(label, o.classes, t, video_seed, o.width, o.height, &rgb);
        w.Write(rgb.data());
      }
      w.Close();
    }
    // Every val_every-th group of `classes` videos goes to val, so both splits hold every class.
    const bool is_val = val_every && (v / o.classes) % val_every == val_every - 1;
    (is_val ? val : train) << "videos/" << name << " " << label << "\n";
  }
}

}  // namespace evl
