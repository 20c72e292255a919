// Under AddressSanitizer and ThreadSanitizer: loaders destroyed at every stage of an epoch (before
// the first batch, after one, mid-epoch with a full queue, after the end), with several worker
// threads, over a dataset that includes an undecodable file. Exits non-zero on any sanitizer report or hang
// (the runner's timeout).
#include <torch/torch.h>

#include <cstdio>
#include <fstream>
#include <memory>

#include "evl/dataset.h"
#include "evl/loader.h"
#include "evl/synth.h"

int main(int argc, char** argv) {
  const std::string dir = argc > 1 ? argv[1] : "asan_data";
  evl::SynthOptions s;
  s.out_dir = dir;
  s.videos = 12;
  s.frames = 24;
  s.width = s.height = 32;
  s.val_fraction = 0;
  evl::WriteSynthDataset(s);
  std::ofstream(dir + "/videos/broken.mp4") << "not a video at all";
  std::ofstream(dir + "/train.txt", std::ios::app) << "videos/broken.mp4 1\n";
  evl::ClipDatasetOptions o;
  o.list_path = dir + "/train.txt";
  o.data_root = dir;
  o.num_classes = 4;
  o.num_frames = 4;
  o.sampling_rate = 2;
  o.crop_size = 16;
  o.auto_augment = "rand-m9-n3-mstd0.5-inc1";
  auto ds = std::make_shared<const evl::VideoClipDataset>(o);
  const int64_t n = ds->size();
  auto samples = [n](int64_t step) {
    return std::vector<int64_t>{(step * 5) % n, (step * 7 + 1) % n, (step * 3 + 2) % n, n - 1};
  };
  int64_t batches = 0;
  for (int take : {0, 1, 3, 1000}) {
    for (int workers : {1, 3}) {
      evl::Loader loader(ds, samples, 0, 20, workers, 3);
      evl::Batch b;
      for (int i = 0; i < take && loader.Next(&b); ++i) ++batches;
    }  // destroyed here, mid-epoch except for take = 1000
  }
  std::printf("asan_loader: %ld batches, loaders destroyed at every stage\n", static_cast<long>(batches));
  return batches == 2 * (0 + 1 + 3 + 20) ? 0 : 1;
}
