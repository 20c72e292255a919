// Model throughput: forward clips/s and training-step clips/s (frozen backbone forward, decoder
// forward + backward, AdamW) for EVL at fp32 and with a bf16 backbone, beside the official model
// code (or evl's Python reference) run through Debian's python3-torch on the same shapes and
// threads, in the same run; prints the ratios. With --device cuda it measures the official GPU
// setting instead: FP16 backbone, decoder under FP16 autocast with a scaled loss (also built by the
// standalone `cmake -S model` build, for GPU machines that have LibTorch and nothing else).
//
// usage: evl_model_bench [--device cpu|cuda] [--threads 2] [--batch 2] [--frames 8] [--preset B16|L14|tiny]
//                        [--iters 2] [--official-repo DIR] [--python /usr/bin/python3] [--no-python]
#include <torch/cuda.h>
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include "evl/adamw.h"
#include "evl/autocast.h"
#include "evl/loss_scaler.h"
#include "evl/model.h"
#include "evl/runtime_info.h"
#include "evl/train_step.h"


namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

struct Args {
  int threads = 2, batch = 2, frames = 8, iters = 2;
  std::string preset = "B16", official_repo, python = "/usr/bin/python3", device = "cpu";
  bool run_python = true;
};

evl::EVLOptions Options(const Args& a, c10::ScalarType dtype) {
  evl::EVLOptions o;
  if (a.preset == "tiny") {
    o.backbone = {64, 4, 4, 8, 32, 4.0, dtype};
    o.decoder.num_layers = 2;
    o.decoder.qkv_dim = 64;
    o.decoder.num_heads = 4;
  } else if (a.preset == "L14") {  // the ViT-L/14 recipes: 4 decoder layers of width 1024, 16 heads
    o.backbone = {1024, 24, 16, 14, 224, 4.0, dtype};
    o.decoder.qkv_dim = 1024;
    o.decoder.num_heads = 16;
  }
  o.backbone.dtype = dtype;
  o.num_frames = a.frames;
  o.num_classes = 400;
  return o;
}

struct Result {
  double forward_cps = 0, step_cps = 0;
  double backbone_s = 0;   // one backbone forward of the batch, inside a training step
  double peak_bytes = 0;   // CUDA allocator peak during the timed steps
  std::string breakdown;
};

// The device's FP16 matmul rate (TFLOP/s) on 8192^3 products: the yardstick for the backbone.
double MeasuredHalfMatmulTflops() {
  const int64_t n = 8192;
  auto a = torch::randn({n, n}, torch::TensorOptions().dtype(torch::kHalf).device(torch::kCUDA));
  auto b = torch::randn({n, n}, a.options());
  for (int i = 0; i < 3; ++i) torch::matmul(a, b);
  torch::cuda::synchronize();
  const int iters = 20;
  const auto t0 = Clock::now();
  for (int i = 0; i < iters; ++i) torch::matmul(a, b);
  torch::cuda::synchronize();
  return 2.0 * n * n * n * iters / Seconds(t0, Clock::now()) / 1e12;
}

// `fp16_decoder`: the decoder under FP16 autocast with the loss scaled and the gradients unscaled,
// as `evl train` does on CUDA (the scaler's inf check included).
Result Measure(const Args& a, c10::ScalarType dtype, bool fp16_decoder) {
  torch::manual_seed(0);
  const torch::Device device(a.device);
  const bool cuda = device.is_cuda();
  evl::EVLTransformer model(Options(a, dtype));
  model->to(device);
  const int64_t S = model->options().backbone.input_size;
  auto x = torch::randn({a.batch, 3, a.frames, S, S}).to(device);
  auto y = torch::randint(0, 400, {a.batch}, torch::kLong).to(device);
  std::vector<torch::Tensor> trainable;
  for (auto& p : model->parameters())
    if (p.requires_grad()) trainable.push_back(p);
  evl::MultiTensorAdamW opt(trainable, torch::optim::AdamWOptions(4e-4).weight_decay(0.05));
  // Timings are only true once the device has finished the queued work.
  auto now = [&] {
    if (cuda) torch::cuda::synchronize();
    return Clock::now();
  };
  const auto autocast = fp16_decoder ? evl::AutocastDtype::kHalf : evl::AutocastDtype::kOff;
  auto backbone = [&] {
    evl::AutocastScope scope(cuda, autocast);
    return model->backbone_features(x);
  };
  auto decode = [&](const std::vector<evl::BlockFeatures>& feats) {
    evl::AutocastScope scope(cuda, autocast);
    return model->decode(feats).to(torch::kFloat);
  };
  // The training step is evl train's own (evl/train_step.h): FP16 with GradScaler's dynamic scale.
  evl::DynamicLossScaler scaler;
  evl::TrainStep train_step(*model, opt, trainable, fp16_decoder ? &scaler : nullptr, {1, 0.0, autocast, cuda, 0.0});
  auto unscale_and_step = [&] { train_step.Apply(train_step.Unscale().item<float>() > 0); };
  Result r;
  model->eval();
  {
    torch::NoGradGuard ng;
    decode(backbone());  // warm-up
    auto t0 = now();
    for (int i = 0; i < a.iters; ++i) decode(backbone());
    r.forward_cps = a.batch * a.iters / Seconds(t0, now());
  }
  model->train();
  auto step = [&] {
    train_step.ForwardBackward(x, y);
    unscale_and_step();
  };
  step();
  if (cuda) evl::ResetCudaPeakAllocated(device.index() < 0 ? 0 : device.index());
  auto t0 = now();
  for (int i = 0; i < a.iters; ++i) step();
  r.step_cps = a.batch * a.iters / Seconds(t0, now());
  if (cuda) r.peak_bytes = evl::CudaPeakAllocatedBytes(device.index() < 0 ? 0 : device.index());
  // Where a step's time goes (one more step, timed piece by piece).
  auto t1 = now();
  auto feats = backbone();
  auto t2 = now();
  auto loss = torch::nn::functional::cross_entropy(decode(feats), y);
  auto t3 = now();
  opt.zero_grad();
  (fp16_decoder ? loss * scaler.scale() : loss).backward();
  auto t4 = now();
  unscale_and_step();
  auto t5 = now();
  r.backbone_s = Seconds(t1, t2);
  r.breakdown = "backbone " + std::to_string(Seconds(t1, t2)) + " s, decoder fwd " + std::to_string(Seconds(t2, t3)) +
                " s, bwd " + std::to_string(Seconds(t3, t4)) + " s, AdamW " + std::to_string(Seconds(t4, t5)) + " s";
  return r;
}

std::map<std::string, double> RunPython(const Args& a, const std::string& dtype) {
  std::string cmd = a.python + " " + EVL_SOURCE_DIR + "/bench/official_step.py --threads " + std::to_string(a.threads) +
                    " --batch " + std::to_string(a.batch) + " --frames " + std::to_string(a.frames) + " --iters " +
                    std::to_string(a.iters) + " --preset " + a.preset + " --dtype " + dtype + " --device " + a.device;
  if (!a.official_repo.empty()) cmd += " --official-repo " + a.official_repo;
  std::map<std::string, double> out;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return out;
  char key[128];
  double v;
  while (std::fscanf(p, "%127s %lf", key, &v) == 2) out[key] = v;
  pclose(p);
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    std::string k = argv[i];
    auto next = [&] { return std::string(i + 1 < argc ? argv[++i] : ""); };
    if (k == "--threads") a.threads = std::stoi(next());
    else if (k == "--batch") a.batch = std::stoi(next());
    else if (k == "--frames") a.frames = std::stoi(next());
    else if (k == "--iters") a.iters = std::stoi(next());
    else if (k == "--preset") a.preset = next();
    else if (k == "--official-repo") a.official_repo = next();
    else if (k == "--python") a.python = next();
    else if (k == "--no-python") a.run_python = false;
    else if (k == "--device") a.device = next();
    else {
      std::cerr << "unknown flag " << k << "\n";
      return 2;
    }
  }
  if (a.preset != "B16" && a.preset != "L14" && a.preset != "tiny") {
    std::cerr << "--preset " << a.preset << ": unknown (B16, L14, tiny)\n";
    return 2;
  }
  const bool cuda = a.device == "cuda";
  if (cuda && !torch::cuda::is_available()) {
    std::cerr << "--device cuda: this LibTorch sees no CUDA device\n";
    return 2;
  }
  if (a.device != "cpu" && !cuda) {
    std::cerr << "--device must be cpu or cuda\n";
    return 2;
  }
  torch::set_num_threads(a.threads);
  std::printf("EVL %s, %d frames, batch %d clips, %s, %d threads, %d timed iterations\n", a.preset.c_str(), a.frames,
              a.batch, a.device.c_str(), a.threads, a.iters);
  // The Python baseline runs the official recipe for the device: fp32 on CPU; on CUDA an fp16
  // backbone with the rest under autocast and a GradScaler.
  const std::string py_mode = cuda ? "fp16" : "fp32";
  std::map<std::string, double> py;
  if (a.run_python) {
    py = RunPython(a, py_mode);
    std::printf("python (%s, %s): forward %.3f clips/s, train step %.3f clips/s\n",
                a.official_repo.empty() ? "evl_reference.py" : "official model.py", py_mode.c_str(),
                py["forward_clips_per_s"], py["step_clips_per_s"]);
  }
  struct Mode {
    const char* name;
    c10::ScalarType backbone;
    bool fp16_decoder;
  };
  const std::vector<Mode> modes = cuda ? std::vector<Mode>{{"fp16 backbone + fp16 autocast", torch::kHalf, true},
                                                           {"fp32", torch::kFloat, false}}
                                       : std::vector<Mode>{{"fp32 backbone", torch::kFloat, false},
                                                           {"bf16 backbone", torch::kBFloat16, false}};
  for (const Mode& m : modes) {
    Result r = Measure(a, m.backbone, m.fp16_decoder);
    std::printf("evl %s: forward %.3f clips/s, train step %.3f clips/s", m.name, r.forward_cps, r.step_cps);
    if (py.count("step_clips_per_s") && py["step_clips_per_s"] > 0)
      std::printf("  | vs python %s: forward %.2fx, train step %.2fx", py_mode.c_str(),
                  r.forward_cps / py["forward_clips_per_s"], r.step_cps / py["step_clips_per_s"]);
    std::printf("\n    step breakdown: %s\n", r.breakdown.c_str());
    if (cuda && m.backbone == torch::kHalf) {
      evl::EVLTransformer probe(Options(a, m.backbone));
      const double gflop = evl::Summarize(probe).backbone_gflops * a.batch;
      const double tflops = MeasuredHalfMatmulTflops();
      const double floor_s = gflop / 1e3 / tflops;
      std::printf("    backbone forward %.2f ms for %.0f GFLOP; at the measured fp16 matmul rate %.0f TFLOP/s those "
                  "FLOPs need %.2f ms: %.2fx of the FLOP floor (goal <= 1.7x, stretch 1.5x)\n",
                  1e3 * r.backbone_s, gflop, tflops, 1e3 * floor_s, r.backbone_s / floor_s);
      std::printf("    GPU memory peak %.1f MiB per training step, %.1f MiB per clip\n", r.peak_bytes / (1 << 20),
                  r.peak_bytes / (1 << 20) / a.batch);
    }
  }
  return 0;
}
