// `evl data prepare`: re-encodes a dataset for training — H.264, short side resized, a short GOP so
// sparse sampling seeks instead of decoding whole clips — sharded across the ranks of an MPI job
// (`evl launch -n N -- data prepare ...`, or srun), restartable, never touching the originals.
#include <ATen/core/Tensor.h>
#include <CLI/CLI.hpp>
#include <glog/logging.h>
#include <mpi.h>
#include <sys/stat.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <set>

#include "commands.h"
#include "evl/file_util.h"
#include "evl/checkpoint_manager.h"  // MakeDirectories
#include "evl/topology.h"
#include "evl/video_list.h"
#include "evl/video_reader.h"
#include "evl/video_writer.h"

namespace evl {
namespace {

struct PrepareOptions {
  std::string list, data_root, out_dir;
  // From the sweep in docs/benchmarks.md (bench/prepare_sweep.sh, realistic K400-like footage):
  // short side 256, every frame a keyframe, libx264's fastdecode tune (CAVLC, no deblocking) gave
  // the fastest training path — 155-176 clips/s per core, 92-106 with RandAugment, ~35x the
  // official loader on the originals — at 0.87x their size; --keyint 4 gives ~80-105 (69-77) at
  // 0.49x, and dropping the tune costs about half the speed.
  int short_side = 256;
  int keyint = 1;
  int crf = 23;
  std::string tune = "fastdecode";
};

std::string RealPath(const std::string& p) {
  char buf[PATH_MAX];
  return realpath(p.c_str(), buf) ? std::string(buf) : p;
}

// The output's path relative to OUT: the input's path relative to the data root, as .mp4.
std::string OutputName(const std::string& input, const std::string& data_root) {
  std::string rel = input;
  if (!data_root.empty() && rel.rfind(data_root + "/", 0) == 0) rel = rel.substr(data_root.size() + 1);
  while (!rel.empty() && rel[0] == '/') rel = rel.substr(1);
  const size_t dot = rel.rfind('.'), slash = rel.rfind('/');
  if (dot != std::string::npos && (slash == std::string::npos || dot > slash)) rel = rel.substr(0, dot);
  return rel + ".mp4";
}

void TranscodeOnce(const std::string& in, const std::string& out, const PrepareOptions& o, VideoReader& reader) {
  reader.Open(in);
  const VideoInfo info = reader.info();
  int w = info.width, h = info.height;
  const int short_side = std::min(w, h);
  if (o.short_side > 0 && short_side > o.short_side) {  // never upscale
    if (h <= w) {
      w = static_cast<int>(std::lround(static_cast<double>(w) * o.short_side / h));
      h = o.short_side;
    } else {
      h = static_cast<int>(std::lround(static_cast<double>(h) * o.short_side / w));
      w = o.short_side;
    }
  }
  w -= w % 2;  // 4:2:0 chroma needs even sizes
  h -= h % 2;
  VideoWriterOptions wo;
  wo.width = w;
  wo.height = h;
  // Frame indices, not timestamps, are what sampling uses: a constant rate keeps every frame.
  wo.fps = std::max(1, static_cast<int>(std::lround(info.fps > 0 ? info.fps : 30)));
  wo.gop = o.keyint;
  wo.crf = o.crf;
  wo.tune = o.tune;
  wo.bframes = 0;  // with a short GOP, B-frames cost seek time and save little
  // Smaller files decode faster; a restart skips finished files, so their exact bytes do not matter.
  wo.mb_tree = true;
  const std::string tmp = out + ".tmp.mp4";
  try {
    VideoWriter writer(tmp, wo);
    // Chunks bound the memory; each re-seek decodes at most one GOP of the source again.
    constexpr int64_t kChunk = 256;
    for (int64_t first = 0; first < info.num_frames; first += kChunk) {
      std::vector<int64_t> idx;
      for (int64_t i = first; i < std::min(info.num_frames, first + kChunk); ++i) idx.push_back(i);
      const at::Tensor frames = reader.Decode(idx, h, w);
      const auto* p = static_cast<const uint8_t*>(frames.data_ptr());
      for (size_t k = 0; k < idx.size(); ++k) writer.Write(p + k * static_cast<size_t>(h) * w * 3);
    }
    writer.Close();
  } catch (...) {
    std::remove(tmp.c_str());
    throw;
  }
  if (std::rename(tmp.c_str(), out.c_str()) != 0) throw DataError(out + ": cannot rename the finished file into place");
}

// Every frame in the official order; a file whose packets misstated its frames starts over once,
// with the count decoding found.
void Transcode(const std::string& in, const std::string& out, const PrepareOptions& o, VideoReader& reader) {
  OnceMoreIfTheOrderChanged([&] { TranscodeOnce(in, out, o, reader); });
}

int RunDataPrepare(int* argc, char*** argv, const PrepareOptions& o) {
  if (o.out_dir.empty() || o.list.empty()) throw std::invalid_argument("evl data prepare: --list and --out are required");
  if (o.keyint < 1) throw std::invalid_argument("--keyint must be >= 1");
  // libx264's x264_tune_names; checked here so a typo fails before any rank starts, not per file.
  static const std::set<std::string> kTunes = {"",     "film", "animation",  "grain",
                                               "stillimage", "psnr", "ssim", "fastdecode", "zerolatency"};
  if (!kTunes.count(o.tune))
    throw std::invalid_argument("--tune " + o.tune + ": not one of libx264's tunes (film, animation, grain, "
                                "stillimage, psnr, ssim, fastdecode, zerolatency)");
  const auto entries = ReadVideoList(o.list, o.data_root, 1 << 30);
  const std::string list_name = o.list.substr(o.list.rfind('/') == std::string::npos ? 0 : o.list.rfind('/') + 1);
  if (RealPath(o.out_dir + "/" + list_name) == RealPath(o.list) ||
      (!o.data_root.empty() && RealPath(o.out_dir) == RealPath(o.data_root)))
    throw std::invalid_argument("evl data prepare: --out " + o.out_dir +
                                " is the dataset's own directory; choose another so no original is overwritten");
  return RunRankJob(argc, argv, 1, DeviceRequest::kCpu, [&](const Topology& topo) {
    if (topo.rank == 0) MakeDirectories(o.out_dir);
    MPI_Barrier(MPI_COMM_WORLD);
    const std::string out_root = RealPath(o.out_dir);
    VideoReader reader;
    std::vector<int> status(entries.size(), 0);  // 1 done now, 2 already there, 3 failed
    std::string failures;
    int64_t mine = 0, handled = 0;
    for (size_t i = topo.rank; i < entries.size(); i += topo.world) ++mine;
    const auto t0 = std::chrono::steady_clock::now();
    for (size_t i = topo.rank; i < entries.size(); i += topo.world) {
      const std::string out = o.out_dir + "/" + OutputName(entries[i].path, o.data_root);
      ++handled;
      try {
        if (RealPath(entries[i].path) == RealPath(out) || RealPath(entries[i].path).rfind(out_root + "/", 0) == 0)
          throw DataError(entries[i].path + ": lies inside --out; refusing to overwrite an original");
        if (PathExists(out)) {
          status[i] = 2;  // finished files appear only by rename: restartable
          continue;
        }
        MakeDirectories(out.substr(0, out.rfind('/')));
        Transcode(entries[i].path, out, o, reader);
        VLOG(1) << "wrote " << out;
        status[i] = 1;
      } catch (const std::exception& e) {
        status[i] = 3;
        failures += std::string(e.what()) + "\n";
        LOG(WARNING) << "skipped: " << e.what();
      }
      if (topo.rank == 0 && (handled % 50 == 0 || handled == mine)) {
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        LOG(INFO) << "rank 0: " << handled << "/" << mine << " of its videos (" << entries.size() << " in all, "
                  << topo.world << " rank(s)), " << handled / std::max(s, 1e-9) << " videos/s";
      }
    }
    MPI_Allreduce(MPI_IN_PLACE, status.data(), static_cast<int>(status.size()), MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    // Every rank's failure messages, for one summary file.
    int len = static_cast<int>(failures.size());
    std::vector<int> lens(topo.world);
    MPI_Gather(&len, 1, MPI_INT, lens.data(), 1, MPI_INT, 0, MPI_COMM_WORLD);
    std::vector<int> displs(topo.world, 0);
    for (int r = 1; r < topo.world; ++r) displs[r] = displs[r - 1] + lens[r - 1];
    std::string all(topo.rank == 0 ? displs.back() + lens.back() : 0, '\0');
    MPI_Gatherv(failures.data(), len, MPI_CHAR, all.data(), lens.data(), displs.data(), MPI_CHAR, 0, MPI_COMM_WORLD);
    if (topo.rank != 0) return 0;
    int64_t done = 0, kept = 0, failed = 0;
    std::ofstream list(o.out_dir + "/" + list_name);
    for (size_t i = 0; i < entries.size(); ++i) {
      done += status[i] == 1;
      kept += status[i] == 2;
      failed += status[i] == 3;
      if (status[i] == 1 || status[i] == 2) list << OutputName(entries[i].path, o.data_root) << " " << entries[i].label << "\n";
    }
    if (failed) std::ofstream(o.out_dir + "/" + list_name + ".failed") << all;
    std::cout << "prepared " << done << ", already there " << kept << ", failed " << failed << " of " << entries.size()
              << " videos; list: " << o.out_dir << "/" << list_name << " (data_root " << o.out_dir << ")"
              << (failed ? "; failures: " + o.out_dir + "/" + list_name + ".failed" : "") << "\n";
    return failed ? 1 : 0;
  });
}

}  // namespace

void AddDataPrepareCommand(CLI::App& data, Invocation& inv) {
  auto* cmd = data.add_subcommand("prepare", "re-encode a dataset for fast training (sharded over MPI ranks)");
  auto o = std::make_shared<PrepareOptions>();
  cmd->add_option("--list", o->list, "dataset list file")->required();
  cmd->add_option("--data-root", o->data_root, "prefix for relative paths of the list");
  cmd->add_option("--out", o->out_dir, "output directory (videos, and the list under the same name)")->required();
  cmd->add_option("--short-side", o->short_side, "resize the short side to this (never upscales; 0 keeps it)");
  cmd->add_option("--keyint", o->keyint, "keyframe interval (frames)");
  cmd->add_option("--crf", o->crf, "libx264 quality (lower is better)");
  cmd->add_option("--tune", o->tune, "libx264 tune ('' for none; fastdecode: about twice as fast to decode, ~25% larger)");
  OnChosen(cmd, inv, [&inv, o] { return RunDataPrepare(inv.argc, inv.argv, *o); });
}

}  // namespace evl
