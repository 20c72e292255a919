// The synthetic motion dataset: the embedded default for the demo and the tests.
//
// Each video shows a textured square moving in one of K directions over a static noise background;
// the direction is the class, so no single frame tells the class apart. The top rows carry the
// frame index as a binary code (kCodeBits black/white blocks), which the decoding tests read back.
// Same options and seed, same bytes.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace evl {

struct SynthOptions {
  std::string out_dir;
  int classes = 4;
  int videos = 64;
  int frames = 32;
  int width = 64, height = 64;
  uint64_t seed = 0;
  std::string codec = "libx264";  // or "mpeg4"
  int gop = 250;
  int bframes = 3;
  double val_fraction = 0.25;
};

constexpr int kCodeBits = 10;
constexpr int kCodeRows = 8;

// Writes OUT/videos/NNNNN.mp4, OUT/train.txt and OUT/val.txt (paths relative to OUT).
void WriteSynthDataset(const SynthOptions& options);

// Frame t of a video (rgb gets width*height*3 bytes).
void RenderSynthFrame(int label, int classes, int t, uint64_t video_seed, int width, int height,
                      std::vector<uint8_t>* rgb);

// Reads the frame-index code from an RGB frame (row-major, width*height*3).
int ReadFrameCode(const uint8_t* rgb, int width, int height);

}  // namespace evl
