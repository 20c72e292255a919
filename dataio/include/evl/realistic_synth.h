// K400-like benchmark footage that costs what camera footage costs to decode (`evl data synth
// --realistic`). The plain synthetic dataset (evl/synth.h) is a square over a static background:
// its P-frames are almost free, so a loader measured on it looks faster than it is. Here every
// frame has what makes real P-frames expensive: natural (1/f) texture seen through a moving,
// zooming camera at sub-pixel offsets, several independently moving textured objects, sensor
// noise that changes every frame, and a slight flicker. The class is the direction the largest
// object moves in. docs/data.md compares its decode rate with real footage from Debian.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace evl {

struct RealisticOptions {
  std::string out_dir;
  int videos = 8;
  int classes = 4;
  double seconds = 10;
  int fps = 30;
  // Frame sizes, used in turn: Kinetics' common 340x256 (short side 256) and 640x360.
  std::vector<std::pair<int, int>> sizes = {{340, 256}, {640, 360}};
  int crf = 16;       // libx264: ~1-2 Mbit/s at these sizes with this content (K400-like)
  int gop = 250;      // as the Kinetics downloads: long GOPs
  int bframes = 3;
  double noise = 3.0;  // sensor noise, standard deviation in 8-bit levels
  uint64_t seed = 0;
};

// What WriteRealisticDataset wrote: bitrate and frame counts, for the report.
struct RealisticReport {
  int64_t frames = 0;
  double seconds = 0;
  int64_t bytes = 0;
  double mbit_per_s() const { return seconds > 0 ? bytes * 8 / seconds / 1e6 : 0; }
};

// Writes OUT/videos/NNNNN.mp4, OUT/train.txt and OUT/val.txt (paths relative to OUT).
RealisticReport WriteRealisticDataset(const RealisticOptions& options);

// One video's scene: its texture, camera path and objects (a few MB; built once per video).
class RealisticScene {
 public:
  RealisticScene(int width, int height, int label, int classes, double noise, uint64_t seed);
  // Frame t (rgb gets width*height*3 bytes, row-major).
  void Render(int t, std::vector<uint8_t>* rgb) const;

 private:
  struct Object {
    double x0, y0, vx, vy, rx, ry;  // start, velocity (pixels/frame), radii
    double tex_x, tex_y;            // where its texture comes from in the world
    int tint;                       // a channel swap, so objects differ from the background
  };
  // The world's colour at (x, y), bilinear, wrapped (the world is periodic); channels rotated by
  // `rotate` (objects' tint).
  void WorldAt(double x, double y, int rotate, double out[3]) const;
  int width_, height_;
  int world_w_, world_h_;
  std::vector<uint8_t> world_;  // world_h_ x world_w_ x 3
  double cam_x0_, cam_y0_, cam_vx_, cam_vy_, wobble_, zoom_;
  std::vector<Object> objects_;
  double noise_;
  uint64_t seed_;
};

}  // namespace evl
