#include "evl/realistic_synth.h"

#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>

#include "evl/video_list.h"
#include "evl/video_writer.h"

namespace evl {
namespace {

uint64_t Mix(uint64_t x) {  // splitmix64's finalizer: a cheap, well-spread hash
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

// Periodic value noise: lattice values in [-1, 1] every `spacing` pixels, smoothly interpolated.
// The world's sides are multiples of the largest spacing, so the texture tiles without a seam.
double ValueNoise(int x, int y, int spacing, int period_x, int period_y, uint64_t seed) {
  const int cx = x / spacing, cy = y / spacing;
  const double fx = static_cast<double>(x % spacing) / spacing, fy = static_cast<double>(y % spacing) / spacing;
  auto lattice = [&](int ix, int iy) {
    ix %= period_x;
    iy %= period_y;
    const uint64_t h = Mix(seed ^ (static_cast<uint64_t>(ix) << 32) ^ static_cast<uint64_t>(iy) ^
                           (static_cast<uint64_t>(spacing) << 48));
    return static_cast<double>(h >> 11) / static_cast<double>(1ULL << 53) * 2 - 1;
  };
  const double sx = fx * fx * (3 - 2 * fx), sy = fy * fy * (3 - 2 * fy);
  const double top = lattice(cx, cy) * (1 - sx) + lattice(cx + 1, cy) * sx;
  const double bottom = lattice(cx, cy + 1) * (1 - sx) + lattice(cx + 1, cy + 1) * sx;
  return top * (1 - sy) + bottom * sy;
}

// Fractal noise with a 1/f spectrum (each octave's amplitude proportional to its wavelength), as
// natural images have; octaves from `largest` pixels down to 2.
double Fractal(int x, int y, int largest, int min_spacing, int w, int h, uint64_t seed) {
  double sum = 0, norm = 0;
  for (int s = largest; s >= min_spacing; s /= 2) {
    const double a = static_cast<double>(s) / largest;
    sum += a * ValueNoise(x, y, s, w / s, h / s, seed + s);
    norm += a;
  }
  return sum / norm;
}

uint8_t Clamp8(double v) { return static_cast<uint8_t>(std::clamp(std::lround(v), 0L, 255L)); }

}  // namespace

RealisticScene::RealisticScene(int width, int height, int label, int classes, double noise, uint64_t seed)
    : width_(width), height_(height), noise_(noise), seed_(seed) {
  constexpr int kLargest = 64;
  world_w_ = (2 * width + kLargest - 1) / kLargest * kLargest;
  world_h_ = (2 * height + kLargest - 1) / kLargest * kLargest;
  world_.resize(static_cast<size_t>(world_w_) * world_h_ * 3);
  for (int y = 0; y < world_h_; ++y)
    for (int x = 0; x < world_w_; ++x) {
      const double lum = 128 + 150 * Fractal(x, y, kLargest, 2, world_w_, world_h_, seed);
      const double c1 = 60 * Fractal(x, y, kLargest, 16, world_w_, world_h_, seed ^ 0xC1);
      const double c2 = 60 * Fractal(x, y, kLargest, 16, world_w_, world_h_, seed ^ 0xC2);
      uint8_t* p = world_.data() + (static_cast<size_t>(y) * world_w_ + x) * 3;
      p[0] = Clamp8(lum + c1);
      p[1] = Clamp8(lum - 0.5 * c1 - 0.3 * c2);
      p[2] = Clamp8(lum + c2);
    }
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(0, 1);
  // A hand-held camera: a slow pan, a wobble on top, a slow zoom in and out.
  cam_x0_ = u(rng) * world_w_;
  cam_y0_ = u(rng) * world_h_;
  const double pan = 0.3 + 1.2 * u(rng), pan_angle = 2 * M_PI * u(rng);
  cam_vx_ = pan * std::cos(pan_angle);
  cam_vy_ = pan * std::sin(pan_angle);
  wobble_ = 1 + 3 * u(rng);
  zoom_ = 0.03 + 0.07 * u(rng);
  for (int i = 0; i < 3; ++i) {
    Object o;
    const double r = height * (i == 0 ? 0.18 + 0.07 * u(rng) : 0.07 + 0.08 * u(rng));
    o.rx = r * (0.8 + 0.6 * u(rng));
    o.ry = r;
    const double speed = i == 0 ? 1.5 + u(rng) : 0.5 + 2.5 * u(rng);
    const double angle = i == 0 ? 2 * M_PI * label / classes + 0.3 * (u(rng) - 0.5) : 2 * M_PI * u(rng);
    o.vx = speed * std::cos(angle);
    o.vy = speed * std::sin(angle);
    o.x0 = u(rng) * width;
    o.y0 = u(rng) * height;
    o.tex_x = u(rng) * world_w_;
    o.tex_y = u(rng) * world_h_;
    o.tint = static_cast<int>(u(rng) * 3) % 3 + 1;
    objects_.push_back(o);
  }
}

void RealisticScene::WorldAt(double x, double y, int rotate, double out[3]) const {
  x = std::fmod(x, world_w_);
  y = std::fmod(y, world_h_);
  if (x < 0) x += world_w_;
  if (y < 0) y += world_h_;
  const int x0 = std::min(static_cast<int>(x), world_w_ - 1), y0 = std::min(static_cast<int>(y), world_h_ - 1);
  const int x1 = (x0 + 1) % world_w_, y1 = (y0 + 1) % world_h_;
  const double fx = x - x0, fy = y - y0;
  const double w00 = (1 - fx) * (1 - fy), w10 = fx * (1 - fy), w01 = (1 - fx) * fy, w11 = fx * fy;
  const uint8_t* p00 = &world_[(static_cast<size_t>(y0) * world_w_ + x0) * 3];
  const uint8_t* p10 = &world_[(static_cast<size_t>(y0) * world_w_ + x1) * 3];
  const uint8_t* p01 = &world_[(static_cast<size_t>(y1) * world_w_ + x0) * 3];
  const uint8_t* p11 = &world_[(static_cast<size_t>(y1) * world_w_ + x1) * 3];
  for (int c = 0; c < 3; ++c) {
    const int k = (c + rotate) % 3;
    out[c] = p00[k] * w00 + p10[k] * w10 + p01[k] * w01 + p11[k] * w11;
  }
}

void RealisticScene::Render(int t, std::vector<uint8_t>* rgb) const {
  rgb->resize(static_cast<size_t>(width_) * height_ * 3);
  const double cam_x = cam_x0_ + cam_vx_ * t + wobble_ * std::sin(2 * M_PI * t / 47.0);
  const double cam_y = cam_y0_ + cam_vy_ * t + wobble_ * std::sin(2 * M_PI * t / 61.0 + 1.0);
  const double zoom = 1 + zoom_ * std::sin(2 * M_PI * t / 150.0);
  const double gain = 1 + 0.01 * std::sin(2 * M_PI * t / 13.0);
  struct Placed {
    double cx, cy;
    const Object* o;
  };
  std::vector<Placed> placed;
  for (const Object& o : objects_) {
    // Objects leave one side and come back on the other, so they stay in view for the whole clip.
    const double span_x = width_ + 2 * o.rx, span_y = height_ + 2 * o.ry;
    double cx = std::fmod(o.x0 + o.vx * t, span_x), cy = std::fmod(o.y0 + o.vy * t, span_y);
    if (cx < 0) cx += span_x;
    if (cy < 0) cy += span_y;
    placed.push_back({cx - o.rx, cy - o.ry, &o});
  }
  // Sensor noise: triangular (sum of two uniforms), a fresh draw per pixel, channel and frame.
  const double noise_scale = noise_ * std::sqrt(6.0) / 255.0;
  uint64_t state = Mix(seed_ ^ (static_cast<uint64_t>(t) * 0x9E3779B97F4A7C15ULL));
  for (int y = 0; y < height_; ++y) {
    uint8_t* row = rgb->data() + static_cast<size_t>(y) * width_ * 3;
    for (int x = 0; x < width_; ++x) {
      const double wx = cam_x + (x - width_ / 2.0) / zoom, wy = cam_y + (y - height_ / 2.0) / zoom;
      double px[3], obj[3];
      WorldAt(wx, wy, 0, px);
      for (const Placed& p : placed) {
        const double dx = (x - p.cx) / p.o->rx, dy = (y - p.cy) / p.o->ry;
        const double d = dx * dx + dy * dy;
        if (d >= 1) continue;
        const double alpha = std::min(1.0, (1 - d) * p.o->rx * 0.5);  // a one-pixel soft edge
        WorldAt(p.o->tex_x + x - p.cx, p.o->tex_y + y - p.cy, p.o->tint, obj);
        for (int c = 0; c < 3; ++c) px[c] = px[c] * (1 - alpha) + obj[c] * alpha;
      }
      for (int c = 0; c < 3; ++c) {
        state = state * 6364136223846793005ULL + 1442695040888963407ULL;
        const double n = (static_cast<double>((state >> 33) & 0xFF) + static_cast<double>((state >> 41) & 0xFF) - 255.0) *
                         noise_scale;
        row[x * 3 + c] = Clamp8(px[c] * gain + n);
      }
    }
  }
}

RealisticReport WriteRealisticDataset(const RealisticOptions& o) {
  if (o.classes < 2) throw DataError("synth --realistic: --classes must be >= 2");
  if (o.sizes.empty()) throw DataError("synth --realistic: no frame size");
  for (const auto& [w, h] : o.sizes)
    if (w % 2 || h % 2 || w < 16 || h < 16) throw DataError("synth --realistic: sizes must be even and at least 16x16");
  const std::string vdir = o.out_dir + "/videos";
  std::error_code ec;
  std::filesystem::create_directories(vdir, ec);
  if (ec) throw DataError(vdir + ": cannot create the directory (" + ec.message() + ")");
  std::ofstream train(o.out_dir + "/train.txt"), val(o.out_dir + "/val.txt");
  if (!train || !val) throw DataError(o.out_dir + ": cannot write dataset lists");
  const int frames = std::max(1, static_cast<int>(std::lround(o.seconds * o.fps)));
  RealisticReport report;
  std::vector<uint8_t> rgb;
  for (int v = 0; v < o.videos; ++v) {
    const int label = v % o.classes;
    const auto [w, h] = o.sizes[v % o.sizes.size()];
    char name[32];
    std::snprintf(name, sizeof name, "%05d.mp4", v);
    const std::string path = vdir + "/" + name;
    VideoWriterOptions wo;
    wo.width = w;
    wo.height = h;
    wo.fps = o.fps;
    wo.gop = o.gop;
    wo.bframes = o.bframes;
    wo.crf = o.crf;
    wo.mb_tree = true;  // as x264's defaults, which the Kinetics uploads were encoded with
    {
      RealisticScene scene(w, h, label, o.classes, o.noise, Mix(o.seed * 1000003ULL + v));
      VideoWriter writer(path, wo);
      for (int t = 0; t < frames; ++t) {
        scene.Render(t, &rgb);
        writer.Write(rgb.data());
      }
      writer.Close();
    }
    struct stat st {};
    if (::stat(path.c_str(), &st) == 0) report.bytes += st.st_size;
    report.frames += frames;
    report.seconds += static_cast<double>(frames) / o.fps;
    // Every 4th group of `classes` videos goes to val, so both splits hold every class.
    ((v / o.classes) % 4 == 3 ? val : train) << "videos/" << name << " " << label << "\n";
  }
  return report;
}

}  // namespace evl
