// The data pipeline: frame-accurate decoding, the official sampling rules, bad input, determinism,
// and loader shutdown.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <malloc.h>

#include <chrono>
#include <filesystem>
#include <fstream>

#include "test_paths.h"
#include "evl/dataset.h"
#include "evl/loader.h"
#include "evl/rand_augment.h"
#include "evl/sampling.h"
#include "evl/synth.h"
#include "evl/video_list.h"
#include "evl/video_reader.h"
#include "evl/video_writer.h"
#include "resize_window.h"  // evl_dataio's internal resize, tested directly
#include "test_util.h"

namespace evl {
namespace {

using test::RunCommand;
using test::ScratchDir;

// A single synthetic video whose frames carry their own index.
std::string WriteIndexedVideo(const std::string& dir, const std::string& codec, int frames, int gop, int bframes) {
  const std::string path = dir + "/indexed_" + codec + ".mp4";
  VideoWriterOptions o;
  o.codec = codec;
  o.width = 160;
  o.height = 64;
  o.gop = gop;
  o.bframes = bframes;
  VideoWriter w(path, o);
  std::vector<uint8_t> rgb;
  for (int t = 0; t < frames; ++t) {
    RenderSynthFrame(t % 3, 3, t, 7, o.width, o.height, &rgb);
    w.Write(rgb.data());
  }
  w.Close();
  return path;
}

void ExpectFrames(VideoReader& reader, const std::vector<int64_t>& idx) {
  auto frames = reader.Decode(idx);
  ASSERT_EQ(frames.size(0), static_cast<int64_t>(idx.size()));
  for (size_t i = 0; i < idx.size(); ++i) {
    auto f = frames[i].contiguous();
    EXPECT_EQ(ReadFrameCode(f.data_ptr<uint8_t>(), static_cast<int>(f.size(1)), static_cast<int>(f.size(0))), idx[i])
        << "requested frame " << idx[i];
  }
}

class FrameAccuracy : public ::testing::TestWithParam<std::tuple<std::string, int>> {};

TEST_P(FrameAccuracy, DecoderReturnsExactlyTheRequestedFrames) {
  const auto [codec, bframes] = GetParam();
  const std::string dir = ScratchDir("frame_accuracy_" + codec);
  const std::string path = WriteIndexedVideo(dir, codec, 300, 40, bframes);
  VideoReader reader;
  reader.Open(path);
  ASSERT_EQ(reader.info().num_frames, 300);
  ExpectFrames(reader, DenseTrainIndices(300, 8, 16, 37));              // dense, mid-GOP start
  ExpectFrames(reader, DenseTrainIndices(300, 8, 16, 0));
  std::mt19937_64 rng(5);
  ExpectFrames(reader, TsnTrainIndices(300, 8, rng));                   // TSN
  for (const auto& v : TestTemporalViews(300, 8, 16, 3)) ExpectFrames(reader, v);  // eval views
  ExpectFrames(reader, {299, 0, 150, 150, 41, 79});                     // any order, repeats, GOP edges
  ExpectFrames(reader, {123});                                          // mid-GOP seek
  // Skipping is where the speed is: far fewer frames converted than decoded, fewer decoded than exist.
  reader.ResetStats();
  reader.Decode({200, 216});
  EXPECT_EQ(reader.stats().frames_converted, 2);
  EXPECT_LT(reader.stats().packets, 80);
}

INSTANTIATE_TEST_SUITE_P(Codecs, FrameAccuracy,
                         ::testing::Values(std::make_tuple("libx264", 3), std::make_tuple("mpeg4", 2)));

// Same options and seed, same bytes, whatever the heap held before: glibc's M_PERTURB fills every
// fresh allocation with a given byte, so an encoder that reads memory it never wrote shows up as
// two different files (libx264's MB-tree did, which made `evl train`'s synthetic data differ from
// `evl data synth`'s).
int OpenDescriptors() {
  int n = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) ++n;
  return n;
}

// A container that takes no video fails in avformat_write_header, after the file was opened: the
// descriptor, the FFmpeg contexts and the empty file used to stay behind.
TEST(VideoWriter, AFailedOpenLeaksNoDescriptorAndLeavesNoFile) {
  const std::string dir = ScratchDir("writer_fail");
  const int before = OpenDescriptors();
  for (int i = 0; i < 5; ++i) {
    const std::string path = dir + "/clip" + std::to_string(i) + ".wav";
    try {
      VideoWriter w(path, VideoWriterOptions{});
      FAIL() << "a .wav took H.264";
    } catch (const DataError& e) {
      EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    }
    EXPECT_FALSE(std::filesystem::exists(path)) << path << " left behind";
  }
  EXPECT_EQ(OpenDescriptors(), before);
}

TEST(Synth, SameBytesWhateverTheHeapHeld) {
  std::vector<std::string> hashes;
  for (int perturb : {0x55, 0xaa}) {
    SynthOptions o;
    o.out_dir = ScratchDir("synth_perturb_" + std::to_string(perturb));
    o.videos = 12;
    o.frames = 32;
    o.width = o.height = 48;
    ASSERT_EQ(mallopt(M_PERTURB, perturb), 1);
    WriteSynthDataset(o);
    mallopt(M_PERTURB, 0);
    hashes.push_back(RunCommand("cd " + o.out_dir + "/videos && md5sum *").output);
  }
  EXPECT_EQ(hashes[0], hashes[1]);
}

TEST(Sampling, MatchesTheOfficialAlgorithmTable) {
  std::ifstream in(std::string(EVL_FIXTURE_DIR) + "/sampling.json");
  ASSERT_TRUE(in) << "fixture missing";
  nlohmann::json t;
  in >> t;
  int checked = 0;
  for (const auto& row : t["temporal"]) {
    auto got = TestTemporalViews(row[0], row[1], row[2], row[3]);
    EXPECT_EQ(nlohmann::json(got), row[4]) << row.dump();
    ++checked;
  }
  for (const auto& row : t["dense_short"]) {
    EXPECT_EQ(DenseStartRange(row[0], row[1], row[2]), 0);
    EXPECT_EQ(nlohmann::json(DenseTrainIndices(row[0], row[1], row[2], 0)), row[3]) << row.dump();
    ++checked;
  }
  for (const auto& row : t["tsn"]) {
    const int64_t len = row[0];
    const int n = row[1];
    for (int trial = 0; trial < 20; ++trial) {
      std::mt19937_64 rng(trial);
      auto idx = TsnTrainIndices(len, n, rng);
      for (int i = 0; i < n; ++i) {
        EXPECT_GE(idx[i], row[2][i][0].get<int64_t>());
        EXPECT_LE(idx[i], row[2][i][1].get<int64_t>());
      }
    }
    ++checked;
  }
  for (const auto& row : t["spatial"]) {
    int64_t h = 0, w = 0;
    ShortSideResize(row[0], row[1], row[2], &h, &w);
    EXPECT_EQ(h, row[4][0].get<int64_t>());
    EXPECT_EQ(w, row[4][1].get<int64_t>());
    auto crops = TestSpatialCrops(h, w, row[2], row[3]);
    ASSERT_EQ(crops.size(), row[4][2].size());
    for (size_t i = 0; i < crops.size(); ++i) {
      EXPECT_EQ(crops[i].y, row[4][2][i][0].get<int64_t>()) << row.dump();
      EXPECT_EQ(crops[i].x, row[4][2][i][1].get<int64_t>()) << row.dump();
    }
    ++checked;
  }
  EXPECT_GT(checked, 200);
}

TEST(VideoList, MalformedLineNamesFileAndLine) {
  const std::string dir = ScratchDir("list");
  { std::ofstream(dir + "/l.txt") << "a.mp4 0\n\nb c.mp4 1\nd.mp4 x\n"; }
  try {
    ReadVideoList(dir + "/l.txt", "", 4);
    FAIL();
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("l.txt:4:"), std::string::npos) << e.what();
  }
  { std::ofstream(dir + "/m.txt") << "a.mp4 0\nb c.mp4 1\n"; }
  auto entries = ReadVideoList(dir + "/m.txt", "/root", 4);
  EXPECT_EQ(entries[1].path, "/root/b c.mp4");  // spaces in paths are kept
  { std::ofstream(dir + "/n.txt") << "a.mp4 7\n"; }
  EXPECT_THROW(ReadVideoList(dir + "/n.txt", "", 4), DataError);
}

struct BadDataset {
  std::string dir, list;
  int good = 0, bad = 0;
};

// Good synthetic videos plus one of every kind of bad input.
BadDataset MakeBadDataset() {
  BadDataset d;
  d.dir = ScratchDir("bad_inputs");
  SynthOptions o;
  o.out_dir = d.dir;
  o.videos = 16;
  o.frames = 20;
  o.val_fraction = 0;
  WriteSynthDataset(o);
  const std::string v = d.dir + "/videos/";
  RunCommand("head -c 2000 " + v + "00000.mp4 > " + v + "truncated.mp4");
  RunCommand("head -c 4096 /dev/urandom > " + v + "random.mp4");
  RunCommand(": > " + v + "empty.mp4");
  // audio-only: a valid WAV file
  RunCommand("printf 'RIFF$\\000\\000\\000WAVEfmt \\020\\000\\000\\000\\001\\000\\001\\000\\100\\037\\000\\000\\200>"
             "\\000\\000\\002\\000\\020\\000data\\000\\000\\000\\000' > " + v + "audio.wav");
  { VideoWriterOptions wo; VideoWriter w(v + "zero_frames.mp4", wo); w.Close(); }
  // undecodable: a valid container whose coded frames are overwritten with noise
  RunCommand("cp " + v + "00001.mp4 " + v + "garbled.mp4 && dd if=/dev/urandom of=" + v +
             "garbled.mp4 bs=1 seek=200 count=3000 conv=notrunc 2>/dev/null");
  std::ofstream list(d.dir + "/list.txt");
  for (int i = 0; i < 16; ++i) {
    char name[32];
    std::snprintf(name, sizeof name, "videos/%05d.mp4 %d\n", i, i % 4);
    list << name;
    ++d.good;
  }
  for (const char* bad : {"missing.mp4", "truncated.mp4", "random.mp4", "empty.mp4", "audio.wav", "zero_frames.mp4",
                          "garbled.mp4"}) {
    list << "videos/" << bad << " 0\n";
    ++d.bad;
  }
  d.list = d.dir + "/list.txt";
  return d;
}

ClipDatasetOptions SmallOptions(const std::string& list, const std::string& root, bool train) {
  ClipDatasetOptions o;
  o.list_path = list;
  o.data_root = root;
  o.num_classes = 4;
  o.num_frames = 4;
  o.sampling_rate = 2;
  o.crop_size = 32;
  o.spatial_size = 32;
  o.num_temporal_views = 2;
  o.num_spatial_views = 3;
  o.train = train;
  o.seed = 11;
  return o;
}

TEST(Loader, EveryKindOfBadInputIsSkippedAndCounted) {
  const BadDataset d = MakeBadDataset();
  auto ds = std::make_shared<VideoClipDataset>(SmallOptions(d.list, d.dir, true));
  const int64_t n = ds->size();
  Loader loader(ds, [n](int64_t) {
    std::vector<int64_t> all(n);
    std::iota(all.begin(), all.end(), 0);
    return all;
  }, 0, 2, 2, 1);
  Batch b;
  int64_t steps = 0;
  while (loader.Next(&b)) {
    ++steps;
    EXPECT_EQ(b.clips.sizes(), (std::vector<int64_t>{n, 3, 4, 32, 32}));
    for (size_t i = 16; i < b.indices.size(); ++i) EXPECT_LT(b.indices[i], 16) << "a bad video was used";
    for (size_t i = 0; i < 16; ++i) EXPECT_EQ(b.indices[i], static_cast<int64_t>(i));
  }
  EXPECT_EQ(steps, 2);
  // the garbled file may still decode (H.264 conceals errors); every other bad kind must be skipped
  EXPECT_GE(loader.counters().skipped, 2 * (d.bad - 1));
}

TEST(Loader, MostlyBrokenDatasetAbortsClearly) {
  const std::string dir = ScratchDir("all_bad");
  {
    std::ofstream list(dir + "/list.txt");
    for (int i = 0; i < 10; ++i) list << "nope" << i << ".mp4 0\n";
  }
  auto ds = std::make_shared<VideoClipDataset>(SmallOptions(dir + "/list.txt", dir, true));
  Loader loader(ds, [](int64_t) { return std::vector<int64_t>{0, 1, 2, 3}; }, 0, 100, 2, 2);
  Batch b;
  try {
    while (loader.Next(&b)) {
    }
    FAIL() << "no error";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("most videos fail"), std::string::npos) << e.what();
  }
}

// Four synthetic videos in a fresh scratch directory, as a training set.
std::shared_ptr<VideoClipDataset> FourVideoTrainSet(const std::string& name) {
  const std::string dir = ScratchDir(name);
  SynthOptions o;
  o.out_dir = dir;
  o.videos = 4;
  o.val_fraction = 0;
  WriteSynthDataset(o);
  return std::make_shared<VideoClipDataset>(SmallOptions(dir + "/train.txt", dir, true));
}

// An exception other than DataError in a loader thread (here: a sampler bug handing out an index
// past the list) used to escape the thread and terminate the process without a word.
TEST(Loader, AnUnexpectedErrorInALoaderThreadEndsTheRunNamingTheSample) {
  auto ds = FourVideoTrainSet("loader_unexpected");
  Loader loader(ds, [](int64_t) { return std::vector<int64_t>{0, 1, 99}; }, 0, 3, 2, 1);
  Batch b;
  try {
    while (loader.Next(&b)) {
    }
    FAIL() << "no error";
  } catch (const DataError& e) {
    FAIL() << "reported as a data problem: " << e.what();
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("index 99"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("step 0"), std::string::npos) << e.what();
  }
}

TEST(Augmentation, SameSeedAndIndexGiveIdenticalTensorsAcrossThreadCounts) {
  const std::string dir = ScratchDir("determinism");
  SynthOptions o;
  o.out_dir = dir;
  o.videos = 8;
  o.val_fraction = 0;
  WriteSynthDataset(o);
  auto options = SmallOptions(dir + "/train.txt", dir, true);
  options.auto_augment = "rand-m9-n4-mstd0.5-inc1";  // RandAugment's draws come from the sample's seed too
  auto ds = std::make_shared<VideoClipDataset>(options);
  VideoReader r1, r2;
  EXPECT_TRUE(torch::equal(ds->Load(3, 5, r1), ds->Load(3, 5, r2)));
  EXPECT_FALSE(torch::equal(ds->Load(3, 5, r1), ds->Load(3, 6, r1)));  // other step, other draw
  auto run = [&](int workers) {
    Loader loader(ds, [](int64_t step) { return std::vector<int64_t>{(step * 3) % 8, (step * 5 + 1) % 8, 2}; }, 0, 6,
                  workers, 3);
    std::vector<torch::Tensor> out;
    Batch b;
    while (loader.Next(&b)) out.push_back(b.clips);
    return out;
  };
  auto one = run(1), three = run(3);
  ASSERT_EQ(one.size(), three.size());
  for (size_t i = 0; i < one.size(); ++i) EXPECT_TRUE(torch::equal(one[i], three[i])) << "step " << i;
}

std::vector<uint8_t> ReadBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// The training path computes RandAugment only inside the crop box it will keep. Inside the box the
// values must be those of the ops applied one by one to whole frames: chains drawn from the recipe
// and chains that put whole-frame statistics after geometric ops, on random boxes.
TEST(RandAugment, ARegionGivesTheSameValuesInsideItAsWholeFrames) {
  torch::manual_seed(3);
  // Smooth content plus noise, so that shifts and rotations change values everywhere.
  auto base = torch::rand({2, 1, 60, 80}) * 255;
  auto frames = (torch::nn::functional::interpolate(
                     torch::rand({2, 3, 6, 8}) * 255,
                     torch::nn::functional::InterpolateFuncOptions().size(std::vector<int64_t>{60, 80}).mode(torch::kBilinear)
                         .align_corners(false)) * 0.7 + base * 0.3)
                    .permute({0, 2, 3, 1}).clamp(0, 255).to(torch::kByte).contiguous();
  std::vector<std::vector<AugmentStep>> chains = {
      {{"Rotate", 25}, {"AutoContrast", 0}, {"ShearX", 0.2}, {"SharpnessIncreasing", 1.7}},
      {{"TranslateXRel", 0.3}, {"Contrast", 1.6}, {"Rotate", -12}, {"Equalize", 0}},
      {{"ShearY", -0.25}, {"TranslateYRel", -0.2}, {"Color", 0.4}, {"Sharpness", 0.3}},
  };
  const auto config = ParseRandAugment("rand-m9-n4-mstd0.5-inc1");
  std::mt19937_64 rng(11);
  for (int i = 0; i < 40; ++i) chains.push_back(SampleRandAugment(config, rng));
  int checked = 0;
  for (const auto& steps : chains) {
    auto whole = frames;
    for (const auto& step : steps) whole = ApplyAugmentOp(step, whole);
    for (int k = 0; k < 3; ++k) {
      const int64_t x0 = rng() % 60, y0 = rng() % 45, x1 = x0 + 1 + rng() % (80 - x0), y1 = y0 + 1 + rng() % (60 - y0);
      auto got = ApplyAugmentOps(steps, frames, {x0, y0, x1, y1});
      auto in_box = [&](const torch::Tensor& t) { return t.narrow(1, y0, y1 - y0).narrow(2, x0, x1 - x0); };
      std::string names;
      for (const auto& step : steps) names += step.op + "(" + std::to_string(step.arg) + ") ";
      ASSERT_TRUE(torch::equal(in_box(got), in_box(whole)))
          << names << "box x " << x0 << ".." << x1 << " y " << y0 << ".." << y1;
      ++checked;
    }
  }
  EXPECT_EQ(checked, 129);
}

// The crop's resize computes the same floats whichever way it runs: AVX2 or scalar, on a view of
// larger frames or on a copy, mirrored or flipped afterwards; and they are F.interpolate's (bilinear,
// align_corners=False) of the normalized frames, up to float rounding. Odd widths, and windows that
// end at the last byte of the frames' storage (where a 4-byte gather would read past it).
TEST(ResizeWindow, EveryWayGivesTheSameFloatsAsTheOfficialResize) {
  torch::manual_seed(5);
  const std::array<float, 3> mean = {0.48145466f, 0.4578275f, 0.40821073f}, std = {0.26862954f, 0.26130258f, 0.27577711f};
  const auto frames = torch::randint(0, 256, {3, 37, 53, 3}, torch::kByte);
  std::mt19937_64 rng(2);
  for (int i = 0; i < 60; ++i) {
    const int64_t y = rng() % 30, x = rng() % 40;
    const int64_t h = i % 3 == 0 ? 37 - y : 1 + rng() % (37 - y), w = i % 3 == 0 ? 53 - x : 1 + rng() % (53 - x);
    const int64_t out = 1 + rng() % 70;  // down- and upscaling
    const auto view = frames.narrow(1, y, h).narrow(2, x, w);
    const CropBox all{0, 0, out, out};
    const auto fast = ResizeWindow(view, out, out, all, mean, std);
    ASSERT_TRUE(torch::equal(fast, ResizeWindow(view, out, out, all, mean, std, false, false))) << i;
    ASSERT_TRUE(torch::equal(fast, ResizeWindow(view.contiguous(), out, out, all, mean, std))) << i;
    ASSERT_TRUE(torch::equal(fast.flip({3}), ResizeWindow(view, out, out, all, mean, std, true))) << i;
    ASSERT_TRUE(torch::equal(fast.flip({3}), ResizeWindow(view, out, out, all, mean, std, true, false))) << i;
    const auto m = torch::tensor({mean[0], mean[1], mean[2]}).view({3, 1, 1, 1});
    const auto sd = torch::tensor({std[0], std[1], std[2]}).view({3, 1, 1, 1});
    const auto official = torch::nn::functional::interpolate(
        ((view.permute({3, 0, 1, 2}).to(torch::kFloat) / 255 - m) / sd).transpose(0, 1),
        torch::nn::functional::InterpolateFuncOptions().size(std::vector<int64_t>{out, out}).mode(torch::kBilinear)
            .align_corners(false)).transpose(0, 1);
    ASSERT_LE((fast - official).abs().max().item<float>(), 1e-4) << i;
  }
}

// The affine ops' AVX2 path (eight frames per register pair) gives the scalar path's bytes, for
// clip lengths with and without a remainder of frames, every affine op, and regions that reach the
// frame's edges and its fill.
TEST(RandAugment, VectorizedAffineOpsGiveTheScalarBytes) {
  torch::manual_seed(4);
  std::mt19937_64 rng(9);
  for (int64_t T : {8, 11, 16}) {
    const auto frames = (torch::rand({T, 41, 67, 3}) * 255).to(torch::kByte);
    for (const auto& step : std::vector<AugmentStep>{{"Rotate", 27.5}, {"Rotate", -8}, {"ShearX", 0.3}, {"ShearY", -0.21},
                                                     {"TranslateXRel", 0.45}, {"TranslateYRel", -0.3}}) {
      for (int k = 0; k < 4; ++k) {
        const int64_t x0 = k == 0 ? 0 : static_cast<int64_t>(rng() % 50), y0 = k == 0 ? 0 : static_cast<int64_t>(rng() % 30);
        const int64_t x1 = k == 0 ? 67 : x0 + 1 + static_cast<int64_t>(rng() % (67 - x0));
        const int64_t y1 = k == 0 ? 41 : y0 + 1 + static_cast<int64_t>(rng() % (41 - y0));
        const AugmentRegion r{x0, y0, x1, y1};
        const std::vector<AugmentStep> steps = {step, {"Rotate", 11}};
        auto box = [&](const torch::Tensor& t) { return t.narrow(1, r.y0, r.y1 - r.y0).narrow(2, r.x0, r.x1 - r.x0); };
        const auto before = frames.clone();
        const auto got = ApplyAugmentOps(steps, frames, r);
        ASSERT_TRUE(torch::equal(frames, before)) << "the caller's frames changed";
        auto mine = frames.clone();
        const void* memory = mine.data_ptr();
        const auto in_place = ApplyAugmentOps(steps, std::move(mine), r);
        ASSERT_EQ(in_place.data_ptr(), memory) << "a handed-over clip is worked on in place";
        ASSERT_TRUE(torch::equal(box(in_place), box(got)));
        ASSERT_TRUE(torch::equal(box(got), box(ApplyAugmentOps(steps, frames, r, false))))
            << "T " << T << " " << step.op << " " << step.arg << " region " << r.x0 << "," << r.y0 << " " << r.x1 << ","
            << r.y1;
      }
    }
  }
}

// Every RandAugment op against Pillow 9 (the library the official code calls) on the same image.
// Look-up-table ops must be exact; blends and the bicubic affine transforms may differ by one grey
// level from float rounding, on few pixels.
TEST(RandAugment, OpsMatchPillow) {
  const std::string dir = std::string(EVL_FIXTURE_DIR) + "/rand_augment";
  std::ifstream in(dir + "/cases.json");
  ASSERT_TRUE(in) << "fixture missing: " << dir;
  const auto spec = nlohmann::json::parse(in);
  const int64_t h = spec["height"], w = spec["width"];
  auto input_bytes = ReadBytes(dir + "/input.bin");
  ASSERT_EQ(static_cast<int64_t>(input_bytes.size()), h * w * 3);
  // Two frames: the op must be the same on each.
  auto frame = torch::from_blob(input_bytes.data(), {1, h, w, 3}, torch::kByte).clone();
  auto frames = torch::cat({frame, frame});
  for (const auto& c : spec["cases"]) {
    const std::string op = c["op"];
    const double arg = c["arg"];
    auto want_bytes = ReadBytes(dir + "/" + c["file"].get<std::string>());
    auto want = torch::from_blob(want_bytes.data(), {h, w, 3}, torch::kByte).to(torch::kInt);
    auto got = ApplyAugmentOp({op, arg}, frames).to(torch::kInt);
    ASSERT_TRUE(torch::equal(got[0], got[1])) << op;
    auto diff = (got[0] - want).abs();
    const int max_diff = diff.max().item<int>();
    const double off_share = diff.gt(0).to(torch::kDouble).mean().item<double>();
    const bool lut = op == "AutoContrast" || op == "Equalize" || op == "Invert" || op == "Posterize" ||
                     op == "Solarize" || op == "SolarizeAdd";
    if (lut) {
      EXPECT_EQ(max_diff, 0) << op << " " << arg;
    } else {
      EXPECT_LE(max_diff, 1) << op << " " << arg << " (" << 100 * off_share << "% of values differ)";
      EXPECT_LE(off_share, 0.02) << op << " " << arg;
    }
  }
}

TEST(RandAugment, ParsesTheOfficialSpecAndDrawsFromTheSeed) {
  const auto c = ParseRandAugment("rand-m7-n4-mstd0.5-inc1");
  EXPECT_EQ(c.magnitude, 7);
  EXPECT_EQ(c.num_layers, 4);
  EXPECT_DOUBLE_EQ(c.magnitude_std, 0.5);
  EXPECT_TRUE(c.increasing);
  EXPECT_EQ(RandAugmentOps(c).size(), 15u);
  EXPECT_EQ(RandAugmentOps(c)[4], "PosterizeIncreasing");
  for (const char* bad : {"augmix-m3", "rand-m7x", "rand-q3", "rand-w0", "rand-m99999999999", "rand-mstd0.5x", "rand-n-1",
                          "rand-m7-n4-foo"}) {
    try {
      ParseRandAugment(bad);
      ADD_FAILURE() << bad << " accepted";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find(bad), std::string::npos) << e.what();
    }
  }
  // Same generator state, same ops; about half of the 4 drawn ops apply; magnitudes near 7.
  std::mt19937_64 a(5), b(5);
  int applied = 0;
  for (int i = 0; i < 200; ++i) {
    const auto sa = SampleRandAugment(c, a), sb = SampleRandAugment(c, b);
    ASSERT_EQ(sa.size(), sb.size());
    for (size_t k = 0; k < sa.size(); ++k) {
      EXPECT_EQ(sa[k].op, sb[k].op);
      EXPECT_EQ(sa[k].arg, sb[k].arg);
      if (sa[k].op == "Rotate") EXPECT_NEAR(std::abs(sa[k].arg), 21.0, 6.0);  // 30 * m/10, m ~ N(7, 0.5)
    }
    applied += static_cast<int>(sa.size());
  }
  EXPECT_NEAR(applied / 200.0, 2.0, 0.3);
}

TEST(EvalViews, ShapeIsSpatialTimesTemporal) {
  const std::string dir = ScratchDir("eval_views");
  SynthOptions o;
  o.out_dir = dir;
  o.videos = 2;
  o.width = 96;
  o.height = 64;
  o.val_fraction = 0;
  WriteSynthDataset(o);
  auto ds = VideoClipDataset(SmallOptions(dir + "/train.txt", dir, false));
  VideoReader r;
  auto views = ds.Load(0, 0, r);
  EXPECT_EQ(views.sizes(), (std::vector<int64_t>{6, 3, 4, 32, 32}));
}

TEST(Loader, ShutsDownCleanlyMidEpoch) {
  auto ds = FourVideoTrainSet("shutdown");
  const auto t0 = std::chrono::steady_clock::now();
  {
    Loader loader(ds, [](int64_t) { return std::vector<int64_t>{0, 1, 2, 3}; }, 0, 100000, 3, 4);
    Batch b;
    ASSERT_TRUE(loader.Next(&b));
    ASSERT_TRUE(loader.Next(&b));
  }  // destroyed with 99998 steps to go
  // A bound on a hang, not a speed: two batches of tiny clips (well under a second here) and the
  // shutdown, with room for a loaded CI machine.
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 60.0);
}

}  // namespace
}  // namespace evl
