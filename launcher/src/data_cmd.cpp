// `evl data synth` and `evl data probe`.
#include <ATen/core/Tensor.h>
#include <CLI/CLI.hpp>

#include <chrono>
#include <iomanip>
#include <sstream>
#include <iostream>

#include "commands.h"
#include "config.h"
#include "evl/dataset.h"
#include "evl/model_factory.h"
#include "evl/realistic_synth.h"
#include "evl/synth.h"
#include "evl/video_list.h"
#include "evl/video_reader.h"

namespace evl {
namespace {

int RunDataSynth(const SynthOptions& options) {
  WriteSynthDataset(options);
  std::cout << "wrote " << options.videos << " " << options.codec << " videos (" << options.classes << " classes, "
            << options.frames << " frames of " << options.width << "x" << options.height << ") and train.txt/val.txt to "
            << options.out_dir << "\n";
  return 0;
}

// "340x256,640x360" -> sizes.
std::vector<std::pair<int, int>> ParseSizes(const std::string& text) {
  std::vector<std::pair<int, int>> sizes;
  std::stringstream in(text);
  for (std::string item; std::getline(in, item, ',');) {
    int w = 0, h = 0;
    if (std::sscanf(item.c_str(), "%dx%d", &w, &h) != 2) throw std::invalid_argument("--sizes: expected WxH[,WxH...], got " + text);
    sizes.emplace_back(w, h);
  }
  return sizes;
}

int RunRealisticSynth(const RealisticOptions& o) {
  const auto t0 = std::chrono::steady_clock::now();
  const RealisticReport r = WriteRealisticDataset(o);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::cout << std::fixed << std::setprecision(2) << "wrote " << o.videos << " K400-like videos (" << o.seconds << " s at "
            << o.fps << " fps, H.264 CRF " << o.crf << ", GOP " << o.gop << ", " << o.bframes << " B-frames; "
            << r.frames << " frames, " << r.mbit_per_s() << " Mbit/s on average) and train.txt/val.txt to " << o.out_dir
            << " in " << s << " s\n";
  return 0;
}

int RunDataProbe(const ConfigFlags& flags, const std::string& list, const std::string& data_root, int num_classes) {
  const EvlConfig config = LoadEffectiveConfig(flags.config_path, flags.overrides);
  // What training and evaluation decode: the config's train clip (step 0's draw) and test views.
  ClipDatasetOptions train = DatasetOptionsFromConfig(config, true), eval = DatasetOptionsFromConfig(config, false);
  for (ClipDatasetOptions* o : {&train, &eval}) {
    o->list_path = list;
    o->data_root = data_root;
    o->num_classes = num_classes;
  }
  const VideoClipDataset train_set(train), eval_set(eval);
  VideoReader reader;
  int bad = 0;
  std::cout << std::fixed << std::setprecision(2);
  for (int64_t i = 0; i < train_set.size(); ++i) {
    const std::string& path = train_set.entry(i).path;
    try {
      train_set.Load(i, 0, reader);  // each Load opens the file itself
      eval_set.Load(i, 0, reader);
      const VideoInfo& info = reader.info();
      std::cout << path << ": " << info.num_frames << " frames, " << info.fps << " fps, " << info.codec << ", "
                << info.width << "x" << info.height << ", ok\n";
    } catch (const std::exception& err) {
      ++bad;
      std::cout << "FAILED " << err.what() << "\n";  // the message names the file
    }
  }
  std::cout << train_set.size() << " videos, " << train_set.size() - bad << " ok, " << bad << " with problems ("
            << config.model().num_frames() << " frames, sampling rate " << config.data().sampling_rate() << ", "
            << config.data().num_temporal_views() << "x" << config.data().num_spatial_views() << " test views)\n";
  return bad ? 1 : 0;
}

struct ProbeOptions {
  ConfigFlags flags;
  std::string list, data_root;
  int num_classes = 1 << 30;
};

}  // namespace

void AddDataCommands(CLI::App& app, Invocation& inv) {
  auto* data = app.add_subcommand("data", "datasets: synth, probe, prepare, bench");
  data->require_subcommand(1);

  auto synth = std::make_shared<SynthOptions>();
  auto size = std::make_shared<std::string>("64x64");
  auto* cmd = data->add_subcommand("synth", "write the synthetic motion dataset (real encoded videos)");
  cmd->add_option("--out", synth->out_dir, "output directory")->required();
  cmd->add_option("--classes", synth->classes, "number of classes (motion directions)");
  cmd->add_option("--videos", synth->videos, "number of videos");
  cmd->add_option("--frames", synth->frames, "frames per video");
  cmd->add_option("--size", *size, "WxH");
  cmd->add_option("--seed", synth->seed, "seed (same seed, same bytes)");
  cmd->add_option("--codec", synth->codec, "libx264 or mpeg4");
  cmd->add_option("--gop", synth->gop, "keyframe interval");
  // K400-like benchmark footage (evl/realistic_synth.h).
  auto realistic = std::make_shared<RealisticOptions>();
  auto sizes = std::make_shared<std::string>("340x256,640x360");
  auto* is_realistic = cmd->add_flag("--realistic", "K400-like footage that decodes like camera footage (for benchmarks; "
                                                    "uses --sizes, --seconds, --fps, --crf, --noise)");
  cmd->add_option("--sizes", *sizes, "--realistic: frame sizes, used in turn")->capture_default_str();
  cmd->add_option("--seconds", realistic->seconds, "--realistic: length of each video")->capture_default_str();
  cmd->add_option("--fps", realistic->fps, "--realistic: frame rate")->capture_default_str();
  cmd->add_option("--crf", realistic->crf, "--realistic: libx264 quality")->capture_default_str();
  cmd->add_option("--noise", realistic->noise, "--realistic: sensor noise (8-bit levels, std)")->capture_default_str();
  OnChosen(cmd, inv, [synth, size, realistic, sizes, is_realistic] {
    if (*is_realistic) {
      RealisticOptions o = *realistic;
      o.out_dir = synth->out_dir;
      o.videos = synth->videos;
      o.classes = synth->classes;
      o.seed = synth->seed;
      o.gop = synth->gop;
      o.sizes = ParseSizes(*sizes);
      return RunRealisticSynth(o);
    }
    if (std::sscanf(size->c_str(), "%dx%d", &synth->width, &synth->height) != 2)
      throw std::invalid_argument("--size: expected WxH, got " + *size);
    return RunDataSynth(*synth);
  });

  auto probe = std::make_shared<ProbeOptions>();
  cmd = data->add_subcommand("probe",
                             "decode what training and evaluation will decode from every video of a list (the config's "
                             "train clip and test views), and say why a video fails");
  AddConfigFlags(cmd, &probe->flags);
  cmd->add_option("list", probe->list, "dataset list file")->required();
  cmd->add_option("--data-root", probe->data_root, "prefix for relative paths");
  cmd->add_option("--num-classes", probe->num_classes, "labels must be below this");
  OnChosen(cmd, inv, [probe] { return RunDataProbe(probe->flags, probe->list, probe->data_root, probe->num_classes); });

  AddDataPrepareCommand(*data, inv);
  AddDataBenchCommand(*data, inv);
}

}  // namespace evl
