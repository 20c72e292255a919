#include "evl/video_reader.h"

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/imgutils.h>
#include <libavutil/pixdesc.h>
#include <libswscale/swscale.h>
}

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <map>
#include <set>

#include "decoded_orders.h"
#include "evl/video_list.h"

namespace evl {

DecodedOrders& DecodedOrders::Shared() {
  // 4096 files x a few thousand frames x 8 bytes: tens of MB at most.
  static DecodedOrders orders(4096);
  return orders;
}

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

// What a demux-only pass over a file's packets tells (Open builds it; nothing is decoded): every
// frame's presentation timestamp in presentation order, and the keyframes to seek to.
struct PacketIndex {
  std::vector<int64_t> frame_pts;                      // presentation order
  std::vector<std::pair<int64_t, int64_t>> keyframes;  // (pts, dts), pts-sorted
  // Which keyframe interval `pts` lies in: the number of keyframes at or before it.
  int64_t KeyframeSlot(int64_t pts) const {
    return std::upper_bound(keyframes.begin(), keyframes.end(), std::make_pair(pts, INT64_MAX)) - keyframes.begin();
  }
  // The keyframe at or before `pts` (the first one if none is).
  const std::pair<int64_t, int64_t>& KeyframeBefore(int64_t pts) const {
    const int64_t slot = KeyframeSlot(pts);
    return keyframes[slot == 0 ? 0 : slot - 1];
  }
};

// The frames Decode was asked for, by pts, as converted.
using FrameMap = std::map<int64_t, torch::Tensor>;

// How Decode converts a frame: size, and at native size the rows a crop keeps.
struct ConvertSpec {
  int out_h, out_w;
  std::pair<int64_t, int64_t> rows;
};

// The key the official loader sorts frames by: PyAV's frame.pts, i.e. AVFrame::pts as the decoder
// returns it (not best_effort_timestamp, which differs from it on many files).
int64_t FrameKey(const AVFrame* f) { return f->pts; }

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
  PacketIndex index;
  bool sequential = false;  // the packets do not say which frame is which: decode from the start
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
    index = PacketIndex();
    sequential = false;
    info = VideoInfo();
  }
  [[noreturn]] void Fail(const std::string& why) const { throw DataError(path + ": " + why); }

  // Converts the decoder's current frame to RGB24 at out_w x out_h. At native size, only rows
  // [rows.first, rows.second) are converted (from the chroma row pair at or above the first); the
  // others are left unwritten.
  torch::Tensor Convert(const ConvertSpec& spec) {
    const int out_h = spec.out_h, out_w = spec.out_w;
    const auto rows = spec.rows;
    auto t1 = Clock::now();
    const auto format = static_cast<AVPixelFormat>(frame->format);
    const AVPixFmtDescriptor* desc = av_pix_fmt_desc_get(format);
    int64_t y0 = 0, y1 = out_h;
    const bool sliceable = desc && out_h == frame->height && out_w == frame->width &&
                           !(desc->flags & (AV_PIX_FMT_FLAG_PAL | AV_PIX_FMT_FLAG_BITSTREAM | AV_PIX_FMT_FLAG_HWACCEL));
    // swscale upsamples chroma with a vertical filter whose phase depends on the ratio of the
    // heights (exactly 2 for an even height) and whose taps are clamped at a slice's edges: a
    // slice of whole chroma rows, with a margin of kMargin rows on each side, gives its inner rows
    // the whole frame's bytes; frames of odd height are converted whole.
    constexpr int64_t kMargin = 8;
    const int64_t pair = desc ? int64_t{1} << desc->log2_chroma_h : 1;  // one chroma row covers `pair` rows
    if (sliceable && rows.second > rows.first && out_h % pair == 0) {
      y0 = std::max<int64_t>(0, (rows.first - kMargin) / pair * pair);
      y1 = std::min<int64_t>(out_h, (rows.second + kMargin + pair - 1) / pair * pair);
      if (y1 <= y0) y0 = 0, y1 = out_h;
    }
    // The rows converted get a context of their own height, with the whole frame's width and
    // formats (the corpus test compares with whole-frame conversion on every file).
    const bool whole = y0 == 0 && y1 == out_h;
    const int in_h = whole ? frame->height : static_cast<int>(y1 - y0);
    sws = sws_getCachedContext(sws, frame->width, in_h, format, out_w, whole ? out_h : in_h, AV_PIX_FMT_RGB24,
                               SWS_BILINEAR, nullptr, nullptr, nullptr);
    if (!sws) Fail("cannot convert pixel format " + std::to_string(frame->format));
    // swscale's SIMD paths may write up to a vector past the end of a row; pad the buffer so the
    // last row's overrun stays inside it.
    auto out = torch::empty({static_cast<int64_t>(out_h) * out_w * 3 + 64}, torch::kUInt8)
                   .narrow(0, 0, static_cast<int64_t>(out_h) * out_w * 3)
                   .view({out_h, out_w, 3});
    const uint8_t* src[4] = {};
    for (int p = 0; p < 4 && frame->data[p]; ++p)
      src[p] = frame->data[p] + (y0 >> ((p == 1 || p == 2) ? desc->log2_chroma_h : 0)) * frame->linesize[p];
    uint8_t* dst[4] = {out.data_ptr<uint8_t>() + y0 * out_w * 3, nullptr, nullptr, nullptr};
    int stride[4] = {out_w * 3, 0, 0, 0};
    sws_scale(sws, src, frame->linesize, 0, in_h, dst, stride);
    ++stats.frames_converted;
    stats.convert_s += Since(t1);
    return out;
  }

  // Opens `path`'s demuxer and picks its first video stream (PyAV's `video=0`). Probing
  // (avformat_find_stream_info, as PyAV does on every open) decodes 7 frames or more of an H.264
  // stream, as much as a whole training clip of a prepared copy; kUnlessMp4 leaves it to the
  // caller for MP4/MOV files (see Open). Returns whether it probed.
  enum Probe { kAlways, kUnlessMp4 };
  bool OpenDemuxer(Probe when) {
    int rc = avformat_open_input(&fmt, path.c_str(), nullptr, nullptr);
    if (rc < 0) Fail("cannot open as a video (" + AvError(rc) + ")");
    // PyAV opens every container with GENPTS: packets whose pts the container leaves out (AVI with
    // B-frames) get one from the demuxer, and decoded frames carry it. Same flags, same frame keys.
    fmt->flags |= AVFMT_FLAG_GENPTS;
    const bool probe = when == kAlways || std::string(fmt->iformat->name).find("mp4") == std::string::npos;
    if (probe) {
      ++stats.stream_probes;
      if ((rc = avformat_find_stream_info(fmt, nullptr)) < 0) Fail("cannot read stream info (" + AvError(rc) + ")");
    }
    stream = -1;
    for (unsigned i = 0; i < fmt->nb_streams && stream < 0; ++i)
      if (fmt->streams[i]->codecpar->codec_type == AVMEDIA_TYPE_VIDEO) stream = static_cast<int>(i);
    if (stream < 0) Fail("has no video stream");
    return probe;
  }

  void OpenDecoder() {
    AVStream* st = fmt->streams[stream];
    const AVCodec* codec = avcodec_find_decoder(st->codecpar->codec_id);
    if (!codec) Fail("no decoder for codec id " + std::to_string(st->codecpar->codec_id));
    dec = avcodec_alloc_context3(codec);
    avcodec_parameters_to_context(dec, st->codecpar);
    // Loader threads decode different videos in parallel; one thread per decoder keeps skip_frame
    // switching exact per packet.
    dec->thread_count = 1;
    int rc = avcodec_open2(dec, codec, nullptr);
    if (rc < 0) Fail("cannot open decoder (" + AvError(rc) + ")");
  }

  void OpenInput() {
    OpenDemuxer(kAlways);
    OpenDecoder();
  }

  // Sends `p` (nullptr: end of stream) to the decoder, then hands every frame it returns (in
  // `frame`) with its key to `on_frame`.
  void SendAndDrain(const AVPacket* p, const std::function<void(int64_t key)>& on_frame) {
    auto t0 = Clock::now();
    avcodec_send_packet(dec, p);
    stats.decode_s += Since(t0);
    if (p) ++stats.packets;
    while (true) {
      t0 = Clock::now();
      const int rc = avcodec_receive_frame(dec, frame);
      stats.decode_s += Since(t0);
      if (rc < 0) return;
      ++stats.frames_decoded;
      on_frame(FrameKey(frame));
      av_frame_unref(frame);
    }
  }

  // The official loop: every frame of the stream from the start, none skipped; `on_frame` sees
  // each decoded frame (in `frame`) with its key. The file is opened anew rather than sought to
  // its start: after a seek some demuxers (AVI with B-frames) no longer give packets a pts, and
  // then the frames' keys would differ from the official loader's, which never seeks.
  void DecodeFromStart(const std::function<void(int64_t key)>& on_frame) {
    avcodec_free_context(&dec);
    avformat_close_input(&fmt);
    OpenInput();  // a fresh decoder: nothing skipped
    while (av_read_frame(fmt, pkt) >= 0) {
      if (pkt->stream_index == stream) SendAndDrain(pkt, on_frame);
      av_packet_unref(pkt);
    }
    SendAndDrain(nullptr, on_frame);
  }

  // The frame order the official loader sees: keys of all decoded frames, sorted, duplicates once.
  std::vector<int64_t> DecodedOrder(const std::vector<int64_t>& keys) const {
    const auto none = std::count(keys.begin(), keys.end(), AV_NOPTS_VALUE);
    // Python sorts None keys only when there is nothing else to compare them with.
    if (none > 0 && none < static_cast<int64_t>(keys.size()))
      Fail(std::to_string(none) + " of " + std::to_string(keys.size()) +
           " decoded frames have no timestamp, so their order is undefined (the official loader fails too)");
    std::vector<int64_t> order = keys;
    std::sort(order.begin(), order.end());
    order.erase(std::unique(order.begin(), order.end()), order.end());
    return order;
  }

  // Files whose decoded frames disagreed with their packets, or whose packets could not say, take
  // the decode-all path from now on, in every reader of the process (decoded_orders.h).
  void RememberDecodedOrder(std::vector<int64_t> order) {
    index.frame_pts = order;
    DecodedOrders::Shared().Remember(path, std::move(order));
    info.num_frames = static_cast<int64_t>(index.frame_pts.size());
    sequential = true;
  }

  // Open's demux-only pass: the packet index, and what it says about the stream (whether every
  // packet has a pts, whether each pts is its packet's dts, rising: no reordering).
  PacketIndex IndexPackets(bool* packets_without_pts, bool* in_order, size_t* num_packets);

  // The seek path: the wanted frames, grouped by the keyframe interval they lie in, each group
  // decoded from the keyframe before it. False if a frame was not where the packets put it.
  bool DecodeBySeeking(const std::set<int64_t>& want, const ConvertSpec& spec, FrameMap* got);
  bool DecodeGroup(const std::set<int64_t>& group, const ConvertSpec& spec, FrameMap* got);
  // The decode-all path: every frame from the start like the official loader (a later frame with
  // the same key replaces an earlier one). Throws FrameOrderChanged when the decoded order is not
  // the one the packets promised.
  void DecodeAll(const std::set<int64_t>& want, const ConvertSpec& spec, FrameMap* got);
};

PacketIndex VideoReader::State::IndexPackets(bool* packets_without_pts, bool* in_order, size_t* num_packets) {
  std::vector<PacketInfo> packets;
  *packets_without_pts = false;  // also: packets sharing a pts (the official keeps the last frame)
  *in_order = true;
  while (av_read_frame(fmt, pkt) >= 0) {
    // Packets an edit list discards produce no frame the official decode loop would see.
    if (pkt->stream_index == stream && !(pkt->flags & AV_PKT_FLAG_DISCARD)) {
      *packets_without_pts |= pkt->pts == AV_NOPTS_VALUE;
      *in_order = *in_order && pkt->pts != AV_NOPTS_VALUE && pkt->pts == pkt->dts &&
                  (packets.empty() || pkt->pts > packets.back().pts);
      int64_t pts = pkt->pts != AV_NOPTS_VALUE ? pkt->pts : pkt->dts;
      if (pts == AV_NOPTS_VALUE) pts = static_cast<int64_t>(packets.size());
      packets.push_back({pts, pkt->dts, (pkt->flags & AV_PKT_FLAG_KEY) != 0});
    }
    av_packet_unref(pkt);
  }
  PacketIndex index;
  for (const auto& p : packets) {
    index.frame_pts.push_back(p.pts);
    if (p.key) index.keyframes.emplace_back(p.pts, p.dts);
  }
  std::sort(index.frame_pts.begin(), index.frame_pts.end());
  index.frame_pts.erase(std::unique(index.frame_pts.begin(), index.frame_pts.end()), index.frame_pts.end());
  std::sort(index.keyframes.begin(), index.keyframes.end());
  *num_packets = packets.size();
  return index;
}

bool VideoReader::State::DecodeGroup(const std::set<int64_t>& group, const ConvertSpec& spec, FrameMap* got) {
  const int64_t first = *group.begin();
  const auto& kf = index.KeyframeBefore(first);
  if (kf.second == AV_NOPTS_VALUE)
    avformat_seek_file(fmt, stream, INT64_MIN, INT64_MIN, INT64_MIN, AVSEEK_FLAG_BACKWARD);
  else
    av_seek_frame(fmt, stream, kf.second, AVSEEK_FLAG_BACKWARD);
  avcodec_flush_buffers(dec);
  size_t found = 0;
  bool overshot = false;
  auto take = [&](int64_t pts) {
    if (found == 0 && pts != AV_NOPTS_VALUE && pts > first) overshot = true;
    if (group.count(pts) && !got->count(pts)) {
      (*got)[pts] = Convert(spec);
      ++found;
    }
  };
  bool eof = false;
  while (found < group.size() && !overshot) {
    if (av_read_frame(fmt, pkt) < 0) {
      eof = true;
      break;
    }
    if (pkt->stream_index == stream) {
      const int64_t pts = pkt->pts != AV_NOPTS_VALUE ? pkt->pts : pkt->dts;
      // A frame no one asked for may be skipped if nothing refers to it.
      dec->skip_frame = group.count(pts) ? AVDISCARD_DEFAULT : AVDISCARD_NONREF;
      SendAndDrain(pkt, take);
    }
    av_packet_unref(pkt);
  }
  if (eof && found < group.size()) {
    dec->skip_frame = AVDISCARD_DEFAULT;
    SendAndDrain(nullptr, take);
  }
  return !overshot && found == group.size();
}

bool VideoReader::State::DecodeBySeeking(const std::set<int64_t>& want, const ConvertSpec& spec, FrameMap* got) {
  // Sparse samples of a short-GOP video: where a keyframe lies between two wanted frames, seek to
  // it instead of decoding the reference frames in between (what `evl data prepare` is for).
  std::vector<std::set<int64_t>> groups;
  int64_t group_slot = -1;
  for (int64_t pts : want) {
    const int64_t slot = index.KeyframeSlot(pts);
    if (groups.empty() || slot > group_slot) groups.emplace_back();
    groups.back().insert(pts);
    group_slot = slot;
  }
  for (const auto& g : groups)
    if (!DecodeGroup(g, spec, got)) return false;
  return got->size() == want.size();
}

void VideoReader::State::DecodeAll(const std::set<int64_t>& want, const ConvertSpec& spec, FrameMap* got) {
  got->clear();
  std::vector<int64_t> keys;
  DecodeFromStart([&](int64_t key) {
    keys.push_back(key);
    if (want.count(key)) (*got)[key] = Convert(spec);
  });
  if (keys.empty()) Fail("has no decodable video frame");
  auto order = DecodedOrder(keys);
  const bool same = order == index.frame_pts;
  const int64_t promised = info.num_frames;
  RememberDecodedOrder(std::move(order));  // this file takes the decode-all path from now on
  if (!same)
    throw FrameOrderChanged(path + ": decoding gives " + std::to_string(info.num_frames) + " frames in another order than its " +
                            std::to_string(promised) + " packets promised; draw the frame indices again (Open it anew)");
}

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
  // MP4/MOV state every packet's timestamps and the stream's parameters in their header, so the
  // packets can be indexed before deciding whether the stream probe PyAV makes is needed. Where
  // nothing is reordered (every packet's pts is its dts, rising: no B-frames), an H.264 decoder
  // opened from the header alone returns the same frames with the same keys as a probed one (its
  // reorder delay is 0 either way), and the probe's decoding is saved: this is what `evl data
  // prepare` writes. Any other file is probed as PyAV probes it.
  const bool probed = s.OpenDemuxer(State::kUnlessMp4);
  bool packets_without_pts = false, in_order = true;
  size_t num_packets = 0;
  s.index = s.IndexPackets(&packets_without_pts, &in_order, &num_packets);
  if (!probed && !(in_order && s.fmt->streams[s.stream]->codecpar->codec_id == AV_CODEC_ID_H264)) {
    avformat_close_input(&s.fmt);
    s.OpenDemuxer(State::kAlways);
  }
  s.OpenDecoder();
  AVStream* st = s.fmt->streams[s.stream];
  const AVCodec* codec = s.dec->codec;
  if (num_packets == 0) s.Fail("has zero video frames");
  // Packets without pts (AVI with packed B-frames) or sharing one cannot say which frame is which:
  // such a file is decoded from the start, and its order is the one decoding gives. Open does not
  // decode to learn it: the packets' order stands until Decode's decode-all checks it, so the first
  // sample of the file costs one decode, not two; only where the packets were wrong are the indices
  // drawn again (FrameOrderChanged). An order learnt before, by any reader, is used as it is.
  std::vector<int64_t>& frame_pts = s.index.frame_pts;
  if (auto known = DecodedOrders::Shared().Find(path)) {
    frame_pts = std::move(*known);
    s.sequential = true;
  } else if (packets_without_pts || frame_pts.size() < num_packets) {
    s.sequential = true;
  }
  auto& keyframes = s.index.keyframes;
  if (keyframes.empty() || keyframes.front().first > frame_pts.front())
    keyframes.insert(keyframes.begin(), {frame_pts.front(), AV_NOPTS_VALUE});

  s.info.num_frames = static_cast<int64_t>(frame_pts.size());
  s.info.width = st->codecpar->width;
  s.info.height = st->codecpar->height;
  s.info.fps = av_q2d(st->avg_frame_rate);
  s.info.duration_s =
      frame_pts.front() == AV_NOPTS_VALUE ? 0 : (frame_pts.back() - frame_pts.front()) * av_q2d(st->time_base);
  s.info.codec = codec->name;
  if (s.info.width <= 0 || s.info.height <= 0) s.Fail("video stream has no frame size");
  s.stats.open_s += Since(t0);
}

at::Tensor VideoReader::Decode(const std::vector<int64_t>& indices, int out_h, int out_w,
                               std::pair<int64_t, int64_t> rows) {
  State& s = *s_;
  if (!s.fmt) throw DataError("VideoReader::Decode before Open");
  if (indices.empty()) return torch::empty({0, out_h, out_w, 3}, torch::kUInt8);
  if (out_h <= 0 || out_w <= 0) {
    out_h = s.info.height;
    out_w = s.info.width;
  }
  const ConvertSpec spec{out_h, out_w, rows};
  std::set<int64_t> want;
  for (int64_t i : indices) {
    if (i < 0 || i >= s.info.num_frames)
      s.Fail("frame " + std::to_string(i) + " requested, video has " + std::to_string(s.info.num_frames));
    want.insert(s.index.frame_pts[i]);
  }
  FrameMap got;
  // The fast path, unless this file is known to need the official decode-all; and decode-all when
  // the fast path could not place every frame with certainty.
  if (s.sequential || !s.DecodeBySeeking(want, spec, &got)) s.DecodeAll(want, spec, &got);
  for (int64_t i : indices)
    if (!got.count(s.index.frame_pts[i]))
      s.Fail("frame " + std::to_string(i) + " could not be decoded (corrupt or truncated stream)");
  std::vector<torch::Tensor> frames;
  for (int64_t i : indices) frames.push_back(got[s.index.frame_pts[i]]);
  return torch::stack(frames);
}

}  // namespace evl
