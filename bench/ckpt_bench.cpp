// Checkpoint throughput: save and load of a ViT-B/16 EVL decoder + AdamW state (the trainable part
// of configs/k400_vitb16_8f_dec4x768.pbtxt) beside a plain write/read of the same bytes on the same
// disk, and the stall the training loop sees per save (host snapshot + hand-off to the writer).
//   evl_ckpt_bench [--dir DIR] [--repeat N] [--step-ms MS]
#include <fcntl.h>
#include <torch/torch.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "config.h"
#include "evl/file_util.h"
#include "evl/checkpoint_manager.h"
#include "evl/model_factory.h"

namespace {

using Clock = std::chrono::steady_clock;
double Since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// What a checkpoint write must at least cost: the same bytes, one file, fsync'd.
double PlainWrite(const std::string& path, const std::vector<char>& buf) {
  const auto t0 = Clock::now();
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  for (size_t off = 0; off < buf.size();) {
    const ssize_t n = ::write(fd, buf.data() + off, std::min<size_t>(buf.size() - off, 8 << 20));
    if (n <= 0) std::abort();
    off += static_cast<size_t>(n);
  }
  ::fsync(fd);
  ::close(fd);
  return Since(t0);
}

// What a load must at least cost: a fresh buffer and one read of the file into it.
double PlainRead(const std::string& path, size_t bytes) {
  const auto t0 = Clock::now();
  char* buf = static_cast<char*>(std::aligned_alloc(64, (bytes + 63) / 64 * 64));
  const int fd = ::open(path.c_str(), O_RDONLY);
  size_t off = 0;
  for (ssize_t n; (n = ::read(fd, buf + off, bytes - off)) > 0;) off += static_cast<size_t>(n);
  ::close(fd);
  const double s = Since(t0);
  std::free(buf);
  return s;
}

void DropCache(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  ::close(fd);
}

}  // namespace

int main(int argc, char** argv) {
  std::string dir = "bench_ckpt";
  int repeat = 3;
  double step_ms = 3620;  // ViT-B/16 8f train step, 2 clips, this CPU (docs/benchmarks.md)
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--dir") dir = argv[i + 1];
    else if (a == "--repeat") repeat = std::atoi(argv[i + 1]);
    else if (a == "--step-ms") step_ms = std::atof(argv[i + 1]);
  }
  torch::set_num_threads(2);
  evl::MakeDirectories(dir);
  auto config = evl::LoadEffectiveConfig(std::string(EVL_SOURCE_DIR) + "/configs/k400_vitb16_8f_dec4x768.pbtxt", {});
  config.mutable_model()->mutable_backbone()->clear_weights();  // shapes only: a random backbone will do
  auto model = evl::BuildModel(config, torch::kCPU);
  // Trainable parameters and AdamW state as the trainer snapshots them (exp_avg, exp_avg_sq, step).
  std::vector<std::pair<std::string, torch::Tensor>> live;
  for (const auto& p : model->named_parameters()) {
    if (!p.value().requires_grad()) continue;
    live.emplace_back("model/" + p.key(), p.value().detach());
    live.emplace_back("optim/" + p.key() + "/exp_avg", torch::randn_like(p.value()));
    live.emplace_back("optim/" + p.key() + "/exp_avg_sq", torch::rand_like(p.value()));
    live.emplace_back("optim/" + p.key() + "/step", torch::tensor({1000L}));
  }
  size_t bytes = 0;
  for (const auto& [n, t] : live) bytes += t.numel() * t.element_size();
  std::printf("state: %zu tensors, %.1f MB (ViT-B/16 decoder 4x768 + head, AdamW); dir %s\n", live.size(), bytes / 1e6,
              dir.c_str());
  auto snapshot = [&] {
    evl::CheckpointState s;
    s.step = 1000;
    s.config_text = "x";
    torch::NoGradGuard ng;
    for (const auto& [n, t] : live) s.tensors.emplace_back(n, t.clone());
    return s;
  };
  const evl::CheckpointState state = snapshot();
  std::vector<char> raw(bytes);
  {
    size_t off = 0;
    for (const auto& [n, t] : state.tensors) {
      std::memcpy(raw.data() + off, t.data_ptr(), t.numel() * t.element_size());
      off += t.numel() * t.element_size();
    }
  }
  double best_plain_w = 1e9, best_ckpt_w = 1e9, best_plain_r = 1e9, best_ckpt_r = 1e9, best_stall = 1e9, best_handoff = 1e9;
  const std::string plain = dir + "/plain.bin", ckpt = dir + "/ckpt.evlckpt";
  for (int r = 0; r < repeat; ++r) {
    best_plain_w = std::min(best_plain_w, PlainWrite(plain, raw));
    auto t0 = Clock::now();
    evl::WriteCheckpointFile(ckpt, state);
    best_ckpt_w = std::min(best_ckpt_w, Since(t0));
    DropCache(plain);
    best_plain_r = std::min(best_plain_r, PlainRead(plain, bytes));
    DropCache(ckpt);
    t0 = Clock::now();
    auto back = evl::ReadCheckpointFile(ckpt);  // every tensor's crc32c verified
    best_ckpt_r = std::min(best_ckpt_r, Since(t0));
    // The stall: the loop's host snapshot plus handing it to the background writer.
    evl::AsyncCheckpointer writer(dir + "/async", 1);
    t0 = Clock::now();
    auto s = snapshot();
    const double snap = Since(t0);
    t0 = Clock::now();
    writer.Save(std::move(s));
    const double handoff = Since(t0);
    best_stall = std::min(best_stall, snap + handoff);
    best_handoff = std::min(best_handoff, handoff);
    writer.Wait();
  }
  const double mb = bytes / 1e6;
  std::printf("write: plain %.0f MB/s, checkpoint %.0f MB/s (atomic, crc32c, fsync) = %.0f%% of plain\n",
              mb / best_plain_w, mb / best_ckpt_w, 100 * best_plain_w / best_ckpt_w);
  std::printf("read (page cache dropped): plain %.0f MB/s, checkpoint %.0f MB/s (verified) = %.0f%% of plain\n",
              mb / best_plain_r, mb / best_ckpt_r, 100 * best_plain_r / best_ckpt_r);
  std::printf("stall per save: %.1f ms (snapshot %.1f + hand-off %.2f) = %.2f%% of a %.0f ms step\n", 1e3 * best_stall,
              1e3 * (best_stall - best_handoff), 1e3 * best_handoff, 100 * 1e3 * best_stall / step_ms, step_ms);
  std::remove(plain.c_str());
  std::remove(ckpt.c_str());
  return 0;
}
