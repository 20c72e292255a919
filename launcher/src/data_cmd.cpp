// `evl data synth` and `evl data probe`.
#include <ATen/core/Tensor.h>

#include <iomanip>
#include <iostream>

#include "commands.h"
#include "evl/synth.h"
#include "evl/video_list.h"
#include "evl/video_reader.h"

namespace evl {

int RunDataSynth(const SynthOptions& options) {
  WriteSynthDataset(options);
  std::cout << "wrote " << options.videos << " " << options.codec << " videos (" << options.classes << " classes, "
            << options.frames << " frames of " << options.width << "x" << options.height << ") and train.txt/val.txt to "
            << options.out_dir << "\n";
  return 0;
}

int RunDataProbe(const std::string& list, const std::string& data_root, int num_classes) {
  auto entries = ReadVideoList(list, data_root, num_classes);
  VideoReader reader;
  int bad = 0;
  for (const auto& e : entries) {
    try {
      reader.Open(e.path);
      // Decoding the last frame proves the stream is readable to its end.
      reader.Decode({reader.info().num_frames - 1}, 8, 8);
    } catch (const DataError& err) {
      if (!bad) std::cout << "problems:\n";
      ++bad;
      std::cout << "  " << err.what() << "\n";
    }
  }
  std::cout << entries.size() << " videos, " << entries.size() - bad << " ok, " << bad << " with problems\n";
  return bad ? 1 : 0;
}

}  // namespace evl
