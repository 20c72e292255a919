#include "evl/video_reader.h"

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/imgutils.h>
#include <libswscale/swscale.h>
}

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <set>

#include "evl/video_list.h"

namespace evl {
namespace {

using Clock = std::chrono::steady_clock;
double Since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

std::string AvError(int code) {
  char buf[AV_ERROR_MAX_STRING_SIZE] = {};
  av_strerror(code, buf, sizeof buf);
  return buf;
}

struct PacketInfo {
  int64_t pts, dts;
  bool key;
};

}  // namespace

struct VideoReader::State {
  std::string path;
  AVFormatContext* fmt = nullptr;
  AVCodecContext* dec = nullptr;
  AVPacket* pkt = av_packet_alloc();
  AVFrame* frame = av_frame_alloc();
  SwsContext* sws = nullptr;
  int stream = -1;
  VideoInfo info;
  std::vector<int64_t> frame_pts;            // presentation order
  std::vector<std::pair<int64_t, int64_t>> keyframes;  // (pts, dts), pts-sorted
  DecodeStats stats;

  ~State() {
    Close();
    av_packet_free(&pkt);
    av_frame_free(&frame);
    sws_freeContext(sws);
  }
  void Close() {
    avcodec_free_context(&dec);
    avformat_close_input(&fmt);
    frame_pts.clear();
    keyframes.clear();
    info = VideoInfo();
  }
  [[noreturn]] void Fail(const std::string& why) const { throw DataError(path + ": " + why); }
};

VideoReader::VideoReader() : s_(new State) { av_log_set_level(AV_LOG_QUIET); }
VideoReader::~VideoReader() = default;
const VideoInfo& VideoReader::info() const { return s_->info; }
const DecodeStats& VideoReader::stats() const { return s_->stats; }
void VideoReader::ResetStats() { s_->stats = DecodeStats(); }

void VideoReader::Open(const std::string& path) {
  auto t0 = Clock::now();
  State& s = *s_;
  s.Close();
  s.path = path;
  int rc = avformat_open_input(&s.fmt, path.c_str(), nullptr, nullptr);
  if (rc < 0) s.Fail("cannot open as a video (" + AvError(rc) + ")");
  if ((rc = avformat_find_stream_info(s.fmt, nullptr)) < 0) s.Fail("cannot read stream info (" + AvError(rc) + ")");
  s.stream = av_find_best_stream(s.fmt, AVMEDIA_TYPE_VIDEO, -1, -1, nullptr, 0);
  if (s.stream < 0) s.Fail("has no video stream");
  AVStream* st = s.fmt->streams[s.stream];
  const AVCodec* codec = avcodec_find_decoder(st->codecpar->codec_id);
  if (!codec) s.Fail("no decoder for codec id " + std::to_string(st->codecpar->codec_id));
  s.dec = avcodec_alloc_context3(codec);
  avcodec_parameters_to_context(s.dec, st->codecpar);
  // Loader threads decode different videos in parallel; one thread per decoder keeps skip_frame
  // switching exact per packet.
  s.dec->thread_count = 1;
  if ((rc = avcodec_open2(s.dec, codec, nullptr)) < 0) s.Fail("cannot open decoder (" + AvError(rc) + ")");

  // Demux-only pass: presentation order and keyframes, without decoding anything.
  std::vector<PacketInfo> packets;
  while ((rc = av_read_frame(s.fmt, s.pkt)) >= 0) {
    // Packets an edit list discards produce no frame the official decode loop would see.
    if (s.pkt->stream_index == s.stream && !(s.pkt->flags & AV_PKT_FLAG_DISCARD)) {
      int64_t pts = s.pkt->pts != AV_NOPTS_VALUE ? s.pkt->pts : s.pkt->dts;
      if (pts == AV_NOPTS_VALUE) pts = static_cast<int64_t>(packets.size());
      packets.push_back({pts, s.pkt->dts, (s.pkt->flags & AV_PKT_FLAG_KEY) != 0});
    }
    av_packet_unref(s.pkt);
  }
  if (packets.empty()) s.Fail("has zero video frames");
  for (const auto& p : packets) {
    s.frame_pts.push_back(p.pts);
    if (p.key) s.keyframes.emplace_back(p.pts, p.dts);
  }
  std::sort(s.frame_pts.begin(), s.frame_pts.end());
  s.frame_pts.erase(std::unique(s.frame_pts.begin(), s.frame_pts.end()), s.frame_pts.end());
  std::sort(s.keyframes.begin(), s.keyframes.end());
  if (s.keyframes.empty() || s.keyframes.front().first > s.frame_pts.front())
    s.keyframes.insert(s.keyframes.begin(), {s.frame_pts.front(), AV_NOPTS_VALUE});

  s.info.num_frames = static_cast<int64_t>(s.frame_pts.size());
  s.info.width = st->codecpar->width;
  s.info.height = st->codecpar->height;
  s.info.fps = av_q2d(st->avg_frame_rate);
  s.info.duration_s = (s.frame_pts.back() - s.frame_pts.front()) * av_q2d(st->time_base);
  s.info.codec = codec->name;
  if (s.info.width <= 0 || s.info.height <= 0) s.Fail("video stream has no frame size");
  s.stats.open_s += Since(t0);
}

at::Tensor VideoReader::Decode(const std::vector<int64_t>& indices, int out_h, int out_w) {
  State& s = *s_;
  if (!s.fmt) throw DataError("VideoReader::Decode before Open");
  if (indices.empty()) return torch::empty({0, out_h, out_w, 3}, torch::kUInt8);
  if (out_h <= 0 || out_w <= 0) {
    out_h = s.info.height;
    out_w = s.info.width;
  }
  std::set<int64_t> want;
  for (int64_t i : indices) {
    if (i < 0 || i >= s.info.num_frames)
      s.Fail("frame " + std::to_string(i) + " requested, video has " + std::to_string(s.info.num_frames));
    want.insert(s.frame_pts[i]);
  }
  std::map<int64_t, torch::Tensor> got;
  auto keyframe_index = [&](int64_t pts) {
    return std::upper_bound(s.keyframes.begin(), s.keyframes.end(), std::make_pair(pts, INT64_MAX)) -
           s.keyframes.begin();
  };

  // Decodes the frames of `group` (pts) from the keyframe before its first one.
  auto run = [&](const std::set<int64_t>& group, bool from_start) {
    const int64_t first = *group.begin();
    size_t found = 0;
    auto it = std::upper_bound(s.keyframes.begin(), s.keyframes.end(), std::make_pair(first, INT64_MAX));
    const auto& kf = it == s.keyframes.begin() ? s.keyframes.front() : *std::prev(it);
    const int64_t target = from_start || kf.second == AV_NOPTS_VALUE ? INT64_MIN : kf.second;
    if (target == INT64_MIN)
      avformat_seek_file(s.fmt, s.stream, INT64_MIN, INT64_MIN, INT64_MIN, AVSEEK_FLAG_BACKWARD);
    else
      av_seek_frame(s.fmt, s.stream, target, AVSEEK_FLAG_BACKWARD);
    avcodec_flush_buffers(s.dec);
    bool overshot = false, eof = false;
    auto drain = [&]() {
      while (true) {
        auto t0 = Clock::now();
        int rc = avcodec_receive_frame(s.dec, s.frame);
        s.stats.decode_s += Since(t0);
        if (rc < 0) return;
        ++s.stats.frames_decoded;
        int64_t pts = s.frame->best_effort_timestamp != AV_NOPTS_VALUE ? s.frame->best_effort_timestamp : s.frame->pts;
        if (found == 0 && pts > first && !from_start) overshot = true;
        if (group.count(pts) && !got.count(pts)) {
          auto t1 = Clock::now();
          s.sws = sws_getCachedContext(s.sws, s.frame->width, s.frame->height, static_cast<AVPixelFormat>(s.frame->format),
                                       out_w, out_h, AV_PIX_FMT_RGB24, SWS_BILINEAR, nullptr, nullptr, nullptr);
          if (!s.sws) s.Fail("cannot convert pixel format " + std::to_string(s.frame->format));
          // swscale's SIMD paths may write up to a vector past the end of a row; pad the buffer so
          // the last row's overrun stays inside it.
          auto out = torch::empty({static_cast<int64_t>(out_h) * out_w * 3 + 64}, torch::kUInt8)
                         .narrow(0, 0, static_cast<int64_t>(out_h) * out_w * 3)
                         .view({out_h, out_w, 3});
          uint8_t* dst[4] = {out.data_ptr<uint8_t>(), nullptr, nullptr, nullptr};
          int stride[4] = {out_w * 3, 0, 0, 0};
          sws_scale(s.sws, s.frame->data, s.frame->linesize, 0, s.frame->height, dst, stride);
          got[pts] = out;
          ++found;
          ++s.stats.frames_converted;
          s.stats.convert_s += Since(t1);
        }
        av_frame_unref(s.frame);
      }
    };
    while (found < group.size() && !overshot) {
      int rc = av_read_frame(s.fmt, s.pkt);
      if (rc < 0) {
        eof = true;
        break;
      }
      if (s.pkt->stream_index == s.stream) {
        const int64_t pts = s.pkt->pts != AV_NOPTS_VALUE ? s.pkt->pts : s.pkt->dts;
        // A frame no one asked for may be skipped if nothing refers to it.
        s.dec->skip_frame = group.count(pts) ? AVDISCARD_DEFAULT : AVDISCARD_NONREF;
        auto t0 = Clock::now();
        avcodec_send_packet(s.dec, s.pkt);
        s.stats.decode_s += Since(t0);
        ++s.stats.packets;
        drain();
      }
      av_packet_unref(s.pkt);
    }
    if (eof && found < group.size()) {
      s.dec->skip_frame = AVDISCARD_DEFAULT;
      avcodec_send_packet(s.dec, nullptr);
      drain();
    }
    return !overshot && found == group.size();
  };
  // Sparse samples of a short-GOP video: where a keyframe lies between two wanted frames, seek to
  // it instead of decoding the reference frames in between (what `evl data prepare` is for).
  std::vector<std::set<int64_t>> groups;
  int64_t group_kf = -1;
  for (int64_t pts : want) {
    const int64_t kf = keyframe_index(pts);
    if (groups.empty() || kf > group_kf) groups.emplace_back();
    groups.back().insert(pts);
    group_kf = kf;
  }
  bool ok = true;
  for (const auto& g : groups) ok = ok && run(g, false);
  if (!ok || got.size() < want.size()) {
    got.clear();
    run(want, true);  // the index or the seek was off: decode from the start
  }
  if (got.size() < want.size()) {
    std::string missing;
    for (int64_t i : indices)
      if (!got.count(s.frame_pts[i])) {
        missing = std::to_string(i);
        break;
      }
    s.Fail("frame " + std::to_string(std::stoll(missing)) + " could not be decoded (corrupt or truncated stream)");
  }
  std::vector<torch::Tensor> frames;
  for (int64_t i : indices) frames.push_back(got[s.frame_pts[i]]);
  return torch::stack(frames);
}

}  // namespace evl
