// Encodes RGB frames to a video file with libavcodec/libavformat (used by `evl data synth` and
// the tests' fixtures). Bit-exact flags and one encoder thread make the same frames give the same
// bytes.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

namespace evl {

struct VideoWriterOptions {
  std::string codec = "libx264";  // "libx264" (H.264) or "mpeg4" (MPEG-4 Part 2)
  int width = 64, height = 64;
  int fps = 25;
  int gop = 250;      // keyframe interval
  int bframes = 3;    // libx264 uses b-pyramid when >= 2
  int crf = 23;       // libx264 quality; mpeg4 uses qscale 4
  // libx264 tune ("" none). "fastdecode" (CAVLC instead of CABAC, no deblocking filter, no weighted
  // prediction) makes a file cheaper to decode at some size: what `evl data prepare` copies are for.
  std::string tune;
  // libx264's macroblock-tree rate control: smaller files (a quarter smaller on the synthetic clips
  // at GOP 16), but the bytes then depend on the heap's contents, not only on the frames.
  bool mb_tree = false;
};

class VideoWriter {
 public:
  // Throws DataError naming `path` on failure.
  VideoWriter(const std::string& path, const VideoWriterOptions& options);
  ~VideoWriter();
  VideoWriter(const VideoWriter&) = delete;
  VideoWriter& operator=(const VideoWriter&) = delete;

  // rgb: height*width*3 bytes, row-major.
  void Write(const uint8_t* rgb);
  // Flushes the encoder and writes the trailer; called by the destructor if not called.
  void Close();

 private:
  struct State;
  std::unique_ptr<State> s_;
};

}  // namespace evl
