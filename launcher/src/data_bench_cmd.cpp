// `evl data bench`: clips/s of one decode thread on the training path and the evaluation path, the
// share of time spent opening/indexing, decoding, converting (swscale) and augmenting, beside the
// official loader's logic (PyAV, every frame decoded) run on the same files in the same run.
#include <CLI/CLI.hpp>
#include <glog/logging.h>
#include <sys/stat.h>
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <sstream>

#include "commands.h"
#include "config.h"
#include "evl/file_util.h"
#include "evl/checkpoint_manager.h"
#include "evl/dataset.h"
#include "evl/model_factory.h"
#include "evl/sampling.h"
#include "evl/subprocess.h"
#include "evl/rand_augment.h"
#include "evl/realistic_synth.h"
#include "evl/video_reader.h"

namespace evl {
namespace {

struct DataBenchOptions {
  ConfigFlags flags;
  std::string list, data_root;  // empty list: K400-like realistic clips in RUN_DIR/bench_realistic
  int videos = 8;
  int rounds = 2;
  double target = 0;  // clips/s to feed: print the cores it takes
  std::string python = "/usr/bin/python3";  // Debian's, with python3-av and python3-torch
  std::string pyav_script = std::string(EVL_SOURCE_DIR) + "/bench/pyav_loader.py";
};

using Clock = std::chrono::steady_clock;
double Since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

struct PathResult {
  double clips_per_s = 0;
  double open = 0, decode = 0, convert = 0, rest = 0;  // shares of the wall time
};

template <typename LoadFn>
PathResult Measure(int64_t videos, int rounds, VideoReader& reader, const LoadFn& load) {
  reader.ResetStats();
  const auto t0 = Clock::now();
  for (int r = 0; r < rounds; ++r)
    for (int64_t i = 0; i < videos; ++i) load(i, r);
  const double wall = Since(t0);
  const DecodeStats& s = reader.stats();
  PathResult p;
  p.clips_per_s = videos * rounds / wall;
  p.open = s.open_s / wall;
  p.decode = s.decode_s / wall;
  p.convert = s.convert_s / wall;
  p.rest = std::max(0.0, 1 - p.open - p.decode - p.convert);
  return p;
}

// clips/s of the PyAV baseline, or < 0 with `why` set.
double RunPyav(const DataBenchOptions& o, const std::string& mode, const ClipDatasetOptions& d, std::string* why,
               const std::vector<std::string>& extra = {}) {
  if (o.python.empty()) {
    *why = "--python ''";
    return -1;
  }
  if (!PathExists(o.pyav_script)) {
    *why = o.pyav_script + " not found";
    return -1;
  }
  std::string out;
  std::vector<std::string> args = {o.python, o.pyav_script, mode, d.list_path, d.data_root, std::to_string(d.num_frames),
                                   std::to_string(d.sampling_rate), std::to_string(d.crop_size), std::to_string(d.spatial_size),
                                   std::to_string(d.num_temporal_views), std::to_string(d.num_spatial_views),
                                   std::to_string(o.rounds)};
  args.insert(args.end(), extra.begin(), extra.end());
  const int rc = RunCaptured(args, &out);
  std::istringstream in(out.substr(out.rfind(mode) == std::string::npos ? 0 : out.rfind(mode)));
  std::string tag;
  double cps = -1;
  if (rc != 0 || !(in >> tag >> cps)) {
    *why = o.python + " " + o.pyav_script + " failed (status " + std::to_string(rc) + "): " + out.substr(0, 400);
    return -1;
  }
  return cps;
}

void PrintRow(const std::string& name, const PathResult& p, double pyav, const std::string& why) {
  std::cout << std::left << std::setw(26) << name << std::right << std::fixed << std::setprecision(2) << std::setw(9)
            << p.clips_per_s << std::setprecision(0) << std::setw(7) << 100 * p.open << "%" << std::setw(7)
            << 100 * p.decode << "%" << std::setw(8) << 100 * p.convert << "%" << std::setw(8) << 100 * p.rest << "%";
  if (pyav > 0)
    std::cout << std::setprecision(2) << std::setw(11) << pyav << std::setw(8) << p.clips_per_s / pyav << "x\n";
  else
    std::cout << "   (PyAV: " << why << ")\n";
}

int RunDataBench(const DataBenchOptions& o) {
  EvlConfig config = LoadEffectiveConfig(o.flags.config_path, o.flags.overrides);
  torch::set_num_threads(1);  // per-thread figures: the loader runs one such pipeline per thread
  ClipDatasetOptions train = DatasetOptionsFromConfig(config, true);
  ClipDatasetOptions eval = DatasetOptionsFromConfig(config, false);
  std::string list = o.list, root = o.data_root;
  if (list.empty()) {
    // K400-like footage that decodes like camera footage (evl/realistic_synth.h): 10 s at 30 fps,
    // 340x256 and 640x360 in turn, H.264 GOP 250 with B-frames.
    const std::string dir = config.train().run_dir() + "/bench_realistic";
    if (!PathExists(dir + "/all.txt")) {
      RealisticOptions r;
      r.out_dir = dir;
      r.videos = o.videos;
      LOG(INFO) << "writing " << r.videos << " K400-like videos (evl data synth --realistic) to " << dir;
      const RealisticReport report = WriteRealisticDataset(r);
      LOG(INFO) << report.frames << " frames, " << report.mbit_per_s() << " Mbit/s on average";
      std::ofstream all(dir + "/all.txt");
      for (const char* split : {"/train.txt", "/val.txt"}) all << std::ifstream(dir + split).rdbuf();
    }
    list = dir + "/all.txt";
    root = dir;
  }
  for (auto* d : {&train, &eval}) {
    d->list_path = list;
    d->data_root = root;
    d->num_classes = 1 << 30;
  }
  ClipDatasetOptions train_plain = train;
  train_plain.auto_augment.clear();
  VideoClipDataset all_plain(train_plain);
  VideoReader reader;
  // One untimed pass, so page cache and lazy initialisation are the same for every path. Videos
  // that fail are reported and left out, as training skips them, and the rest are measured.
  std::vector<std::string> usable;
  for (int64_t i = 0; i < all_plain.size(); ++i) {
    try {
      all_plain.Load(i, 1000, reader);
      usable.push_back(all_plain.entry(i).path + " " + std::to_string(all_plain.entry(i).label));
    } catch (const DataError& e) {
      std::cout << "skipping " << e.what() << "\n";
    }
  }
  if (usable.empty()) throw DataError("evl data bench: no video of " + list + " can be used");
  if (static_cast<int64_t>(usable.size()) < all_plain.size()) {
    list = config.train().run_dir() + "/bench_usable.txt";
    MakeDirectories(config.train().run_dir());
    std::ofstream out(list);
    for (const auto& line : usable) out << line << "\n";
    for (auto* d : {&train, &eval, &train_plain}) {
      d->list_path = list;
      d->data_root = "";
    }
  }
  VideoClipDataset ds_plain(train_plain), ds_eval(eval);
  const int64_t n = ds_plain.size();

  std::cout << "evl data bench: " << n << " videos from " << list << ", " << o.rounds
            << " round(s), 1 thread; train " << train.num_frames << "x" << train.sampling_rate << " -> "
            << train.crop_size << "^2, eval " << eval.num_temporal_views << "x" << eval.num_spatial_views << " views\n"
            << std::left << std::setw(26) << "path" << std::right << std::setw(9) << "clips/s" << std::setw(8) << "open"
            << std::setw(8) << "decode" << std::setw(9) << "convert" << std::setw(9) << "augment" << std::setw(11)
            << "PyAV" << std::setw(9) << "ratio" << "\n";
  std::string why;
  // The decode floor: open and decode (to RGB at native size) only the frames the train clip
  // uses, nothing else; the train path cannot be faster than this.
  const PathResult floor = Measure(n, o.rounds, reader, [&](int64_t i, int r) {
    OnceMoreIfTheOrderChanged([&] {
      reader.Open(ds_plain.entry(i).path);
      std::mt19937_64 rng = SampleRng(train_plain.seed, static_cast<uint64_t>(r), static_cast<uint64_t>(i));
      return reader.Decode(ds_plain.TrainFrameIndices(reader.info().num_frames, rng));
    });
  });
  PrintRow("decode floor (train)", floor, -1, "not measured: a floor, not a loader");
  const PathResult tp = Measure(n, o.rounds, reader, [&](int64_t i, int r) { ds_plain.Load(i, r, reader); });
  PrintRow("train", tp, RunPyav(o, "train", train_plain, &why), why);
  std::cout << std::setprecision(2) << "train path / decode floor: " << floor.clips_per_s / tp.clips_per_s
            << "x the floor's time (goal <= 1.5x)\n";
  PathResult ta;
  if (!train.auto_augment.empty()) {
    VideoClipDataset ds_aug(train);
    ta = Measure(n, o.rounds, reader, [&](int64_t i, int r) { ds_aug.Load(i, r, reader); });
    // The official logic's RandAugment (Pillow on every frame) takes magnitude and ops per clip.
    const RandAugmentConfig ra = ParseRandAugment(train.auto_augment);
    PrintRow("train + " + train.auto_augment, ta,
             RunPyav(o, "train_ra", train, &why, {std::to_string(ra.magnitude), std::to_string(ra.num_layers)}), why);
  }
  const PathResult ev = Measure(n, o.rounds, reader, [&](int64_t i, int) { LoadTestViews(ds_eval.entry(i).path, eval, reader); });
  PrintRow("eval", ev, RunPyav(o, "eval", eval, &why), why);
  if (o.target > 0) {
    // One thread is one core's worth: the loader runs one such pipeline per decode thread.
    std::cout << std::setprecision(0) << "cores to feed " << o.target << " clips/s: " << std::setprecision(1) << "train "
              << o.target / tp.clips_per_s;
    if (ta.clips_per_s > 0) std::cout << ", train + " << train.auto_augment << " " << o.target / ta.clips_per_s;
    std::cout << ", eval (videos) " << o.target / ev.clips_per_s << "\n";
  }
  std::cout << "(open: index the packets; decode: libavcodec; convert: swscale to RGB at the target size; "
               "augment: crop/resize, flip, RandAugment, normalise, copies)\n";
  return 0;
}

}  // namespace

void AddDataBenchCommand(CLI::App& data, Invocation& inv) {
  auto* cmd = data.add_subcommand("bench", "clips/s per thread of the train and eval paths, beside PyAV");
  auto o = std::make_shared<DataBenchOptions>();
  AddConfigFlags(cmd, &o->flags);
  cmd->add_option("--list", o->list, "dataset list (default: K400-like realistic clips in RUN_DIR/bench_realistic)");
  cmd->add_option("--data-root", o->data_root, "prefix for relative paths of --list");
  cmd->add_option("--videos", o->videos, "number of K400-like videos to write when no --list is given");
  cmd->add_option("--rounds", o->rounds, "passes over the videos");
  cmd->add_option("--target", o->target, "also print how many cores feed this many clips/s (e.g. a GPU's step rate)");
  cmd->add_option("--python", o->python, "Python with av and torch for the baseline ('' to skip it)");
  cmd->add_option("--pyav-script", o->pyav_script, "the baseline script");
  OnChosen(cmd, inv, [o] { return RunDataBench(*o); });
}

}  // namespace evl
