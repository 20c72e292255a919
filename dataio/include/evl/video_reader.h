// Frame-accurate video decoding with FFmpeg that decodes only what a sample needs.
//
// Frame i means the i-th frame the official loader sees: it decodes every frame of the video
// stream with PyAV, keys each by frame.pts (AVFrame::pts; a later frame with the same key replaces
// the earlier one) and sorts. Open() predicts that order from a demux-only pass over the packets
// (cheap: no decoding), exact for variable frame rates, missing nb_frames, B-frames, edit lists and
// start_time != 0. Decode() seeks to the keyframe before the first requested frame, decodes
// forward, tells the decoder to skip non-reference frames nobody asked for (skip_frame, switched
// per packet), converts only requested frames with swscale, and stops after the last one.
// Where that cannot place a frame with certainty (packets without pts, as in AVI files with packed
// B-frames; packets sharing a pts; frames whose pts differ from their packets'), the file is
// decoded from the start like the official loop, and its decoded order is remembered by this
// reader. A file is undecodable only where that decode-all fails too.
//
// One reader per thread; it reuses its decoder, frames and scaler across calls to Open/Decode.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "evl/video_list.h"

namespace at {
class Tensor;
}

namespace evl {

// Decode() found that the file's frames are not the ones its packets promised (count or order):
// the indices asked for were drawn from a wrong count. The reader now knows the decoded order;
// Open the file again and draw the indices anew (once).
class FrameOrderChanged : public DataError {
 public:
  using DataError::DataError;
};

// Runs `open_and_decode` (which Opens a file and draws its frame indices from info()) once more
// when the reader found that the file's frames are not the ones its packets promised.
template <typename F>
auto OnceMoreIfTheOrderChanged(F open_and_decode) -> decltype(open_and_decode()) {
  try {
    return open_and_decode();
  } catch (const FrameOrderChanged&) {
    return open_and_decode();
  }
}

struct VideoInfo {
  int64_t num_frames = 0;
  int width = 0, height = 0;
  double fps = 0;         // average frame rate as the container states it
  double duration_s = 0;  // span of presentation timestamps
  std::string codec;
};

struct DecodeStats {
  int64_t packets = 0;           // packets sent to the decoder
  int64_t frames_decoded = 0;    // frames the decoder returned
  int64_t frames_converted = 0;  // frames scaled to RGB
  int64_t stream_probes = 0;     // avformat_find_stream_info calls (each decodes a few frames)
  double open_s = 0, decode_s = 0, convert_s = 0;
};

class VideoReader {
 public:
  VideoReader();
  ~VideoReader();
  VideoReader(const VideoReader&) = delete;
  VideoReader& operator=(const VideoReader&) = delete;

  // Opens and indexes `path`. Throws DataError naming the file and the reason (missing, empty,
  // not a video, no video stream, zero frames, no decoder).
  void Open(const std::string& path);
  const VideoInfo& info() const;

  // Frames at presentation indices (any order, repeats allowed), RGB uint8 [N, H, W, 3] in the
  // order of `indices`. out_h/out_w = 0 keeps the native size. At native size, `rows` = [first,
  // last) converts only those rows to RGB (what a crop keeps); the others hold unspecified values.
  // Throws DataError if a frame cannot be decoded (corrupt or truncated stream).
  at::Tensor Decode(const std::vector<int64_t>& indices, int out_h = 0, int out_w = 0,
                    std::pair<int64_t, int64_t> rows = {0, -1});

  const DecodeStats& stats() const;
  void ResetStats();

 private:
  struct State;
  std::unique_ptr<State> s_;
};

}  // namespace evl
