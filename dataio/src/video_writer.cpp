#include "evl/video_writer.h"

#include <cstdio>
#include <cstring>
#include <vector>

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/mem.h>
#include <libavutil/opt.h>
#include <libswscale/swscale.h>
}

#include "evl/video_list.h"

namespace evl {

struct VideoWriter::State {
  std::string path;
  VideoWriterOptions o;
  AVFormatContext* fmt = nullptr;
  AVCodecContext* enc = nullptr;
  AVStream* st = nullptr;
  AVFrame* frame = nullptr;
  AVPacket* pkt = nullptr;
  SwsContext* sws = nullptr;
  int64_t next_pts = 0;
  uint8_t* padded = nullptr;  // av_malloc: aligned for swscale
  bool closed = false;
  bool file_created = false;

  // Also when the constructor throws half-way: every context, the file descriptor, and the
  // unfinished file go.
  ~State() {
    const bool finished = closed;
    Free();
    if (file_created && !finished) std::remove(path.c_str());
  }

  [[noreturn]] void Fail(const std::string& why) { throw DataError(path + ": " + why); }

  void Drain(bool flush) {
    if (avcodec_send_frame(enc, flush ? nullptr : frame) < 0) Fail("encoder rejected a frame");
    while (avcodec_receive_packet(enc, pkt) == 0) {
      // Without a duration the mp4 edit list ends before the last frame, and demuxers drop it.
      if (pkt->duration == 0) pkt->duration = 1;
      av_packet_rescale_ts(pkt, enc->time_base, st->time_base);
      pkt->stream_index = st->index;
      if (av_interleaved_write_frame(fmt, pkt) < 0) Fail("write failed");
    }
  }
  void Free() {
    if (fmt && !(fmt->oformat->flags & AVFMT_NOFILE) && fmt->pb) avio_closep(&fmt->pb);
    avformat_free_context(fmt);
    fmt = nullptr;
    avcodec_free_context(&enc);
    av_frame_free(&frame);
    av_packet_free(&pkt);
    sws_freeContext(sws);
    sws = nullptr;
    av_freep(&padded);
  }
};

VideoWriter::VideoWriter(const std::string& path, const VideoWriterOptions& options) : s_(new State) {
  State& s = *s_;
  s.path = path;
  s.o = options;
  av_log_set_level(AV_LOG_QUIET);
  if (avformat_alloc_output_context2(&s.fmt, nullptr, nullptr, path.c_str()) < 0 || !s.fmt)
    s.Fail("cannot pick a container for this file name");
  s.fmt->flags |= AVFMT_FLAG_BITEXACT;
  const AVCodec* codec = avcodec_find_encoder_by_name(options.codec.c_str());
  if (!codec) s.Fail("encoder '" + options.codec + "' is not available in this FFmpeg");
  s.st = avformat_new_stream(s.fmt, nullptr);
  s.enc = avcodec_alloc_context3(codec);
  if (!s.st || !s.enc) s.Fail("out of memory setting up the encoder");
  s.enc->width = options.width;
  s.enc->height = options.height;
  s.enc->time_base = AVRational{1, options.fps};
  s.enc->framerate = AVRational{options.fps, 1};
  s.enc->pix_fmt = AV_PIX_FMT_YUV420P;
  s.enc->gop_size = options.gop;
  s.enc->max_b_frames = options.bframes;
  s.enc->thread_count = 1;
  s.enc->flags |= AV_CODEC_FLAG_BITEXACT;
  if (s.fmt->oformat->flags & AVFMT_GLOBALHEADER) s.enc->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
  if (options.codec == "libx264") {
    av_opt_set(s.enc->priv_data, "preset", "medium", 0);
    av_opt_set_int(s.enc->priv_data, "crf", options.crf, 0);
    if (!options.tune.empty()) av_opt_set(s.enc->priv_data, "tune", options.tune.c_str(), 0);
    // With MB-tree, libx264 0.164 reads memory it never wrote: the same frames give different files
    // depending on what the heap held (Synth.SameBytesWhateverTheHeapHeld), so it is opt-in.
    const std::string params = std::string("keyint_min=1:scenecut=0") + (options.mb_tree ? "" : ":mbtree=0");
    av_opt_set(s.enc->priv_data, "x264-params", params.c_str(), 0);
  } else {
    s.enc->flags |= AV_CODEC_FLAG_QSCALE;
    s.enc->global_quality = FF_QP2LAMBDA * 4;
  }
  if (avcodec_open2(s.enc, codec, nullptr) < 0)
    s.Fail("cannot open encoder " + options.codec +
           (options.tune.empty() ? std::string() : " with tune '" + options.tune + "' (is it one of libx264's tunes?)"));
  if (avcodec_parameters_from_context(s.st->codecpar, s.enc) < 0) s.Fail("cannot set the stream's parameters");
  s.st->time_base = s.enc->time_base;
  if (!(s.fmt->oformat->flags & AVFMT_NOFILE)) {
    if (avio_open(&s.fmt->pb, path.c_str(), AVIO_FLAG_WRITE) < 0) s.Fail("cannot create file");
    s.file_created = true;
  }
  if (avformat_write_header(s.fmt, nullptr) < 0) s.Fail("cannot write header (does the container take " + options.codec + "?)");
  s.frame = av_frame_alloc();
  s.pkt = av_packet_alloc();
  if (!s.frame || !s.pkt) s.Fail("out of memory allocating a frame");
  s.frame->format = AV_PIX_FMT_YUV420P;
  s.frame->width = options.width;
  s.frame->height = options.height;
  if (av_frame_get_buffer(s.frame, 0) < 0) s.Fail("out of memory allocating a frame");
  // The planes' alignment padding is never written by swscale, and an encoder reading it would make
  // the bytes depend on whatever the allocator handed out: same frames must give the same file.
  for (int p = 0; p < 3; ++p) {
    const int rows = p == 0 ? options.height : (options.height + 1) / 2;
    std::memset(s.frame->data[p], 0, static_cast<size_t>(s.frame->linesize[p]) * rows);
  }
  s.sws = sws_getContext(options.width, options.height, AV_PIX_FMT_RGB24, options.width, options.height,
                         AV_PIX_FMT_YUV420P, SWS_BILINEAR, nullptr, nullptr, nullptr);
  if (!s.sws) s.Fail("swscale cannot convert RGB24 to YUV420P at " + std::to_string(options.width) + "x" +
                     std::to_string(options.height));
}

VideoWriter::~VideoWriter() {
  try {
    Close();
  } catch (...) {
  }
}

void VideoWriter::Write(const uint8_t* rgb) {
  State& s = *s_;
  // Convert from an aligned, padded copy: swscale may read a vector past the end of the last row,
  // and it picks another code path (with other rounding) for unaligned input, which made the
  // output depend on where the caller's buffer happened to sit.
  const size_t bytes = static_cast<size_t>(s.o.width) * s.o.height * 3;
  if (!s.padded) s.padded = static_cast<uint8_t*>(av_malloc(bytes + 64));
  if (!s.padded) s.Fail("out of memory");
  if (av_frame_make_writable(s.frame) < 0) s.Fail("out of memory");
  std::memcpy(s.padded, rgb, bytes);
  const uint8_t* src[4] = {s.padded, nullptr, nullptr, nullptr};
  int stride[4] = {s.o.width * 3, 0, 0, 0};
  sws_scale(s.sws, src, stride, 0, s.o.height, s.frame->data, s.frame->linesize);
  s.frame->pts = s.next_pts++;
  s.Drain(false);
}

void VideoWriter::Close() {
  State& s = *s_;
  if (s.closed) return;
  s.closed = true;
  s.Drain(true);
  if (av_write_trailer(s.fmt) < 0) s.Fail("cannot write trailer");
}

}  // namespace evl
