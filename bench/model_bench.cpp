// Model throughput: forward clips/s and training-step clips/s (frozen backbone forward, decoder
// forward + backward, AdamW) for EVL at fp32 and with a bf16 backbone, beside the official model
// code (or evl's Python reference) run through Debian's python3-torch on the same shapes and
// threads, in the same run; prints the ratios.
//
// usage: evl_model_bench [--threads 2] [--batch 2] [--frames 8] [--preset B16|tiny] [--iters 2]
//                        [--official-repo DIR] [--python /usr/bin/python3] [--no-python]
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <iostream>
#include <map>
#include <string>

#include "evl/model.h"

namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

struct Args {
  int threads = 2, batch = 2, frames = 8, iters = 2;
  std::string preset = "B16", official_repo, python = "/usr/bin/python3";
  bool run_python = true;
};

evl::EVLOptions Options(const Args& a, c10::ScalarType dtype) {
  evl::EVLOptions o;
  if (a.preset == "tiny") {
    o.backbone = {64, 4, 4, 8, 32, 4.0, dtype};
    o.decoder.num_layers = 2;
    o.decoder.qkv_dim = 64;
    o.decoder.num_heads = 4;
  }
  o.backbone.dtype = dtype;
  o.num_frames = a.frames;
  o.num_classes = 400;
  return o;
}

struct Result {
  double forward_cps = 0, step_cps = 0;
  std::string breakdown;
};

Result Measure(const Args& a, c10::ScalarType dtype) {
  torch::manual_seed(0);
  evl::EVLTransformer model(Options(a, dtype));
  const int64_t S = model->options().backbone.input_size;
  auto x = torch::randn({a.batch, 3, a.frames, S, S});
  auto y = torch::randint(0, 400, {a.batch}, torch::kLong);
  torch::optim::AdamW opt(model->parameters(), torch::optim::AdamWOptions(4e-4).weight_decay(0.05));
  Result r;
  model->eval();
  {
    torch::NoGradGuard ng;
    model->forward(x);  // warm-up
    auto t0 = Clock::now();
    for (int i = 0; i < a.iters; ++i) model->forward(x);
    r.forward_cps = a.batch * a.iters / Seconds(t0, Clock::now());
  }
  model->train();
  auto step = [&] {
    opt.zero_grad();
    auto loss = torch::nn::functional::cross_entropy(model->forward(x), y);
    loss.backward();
    opt.step();
  };
  step();
  auto t0 = Clock::now();
  for (int i = 0; i < a.iters; ++i) step();
  r.step_cps = a.batch * a.iters / Seconds(t0, Clock::now());
  // Where a step's time goes (one more step, timed piece by piece).
  auto t1 = Clock::now();
  auto feats = model->backbone_features(x);
  auto t2 = Clock::now();
  auto loss = torch::nn::functional::cross_entropy(model->decode(feats), y);
  auto t3 = Clock::now();
  opt.zero_grad();
  loss.backward();
  auto t4 = Clock::now();
  opt.step();
  auto t5 = Clock::now();
  r.breakdown = "backbone " + std::to_string(Seconds(t1, t2)) + " s, decoder fwd " + std::to_string(Seconds(t2, t3)) +
                " s, bwd " + std::to_string(Seconds(t3, t4)) + " s, AdamW " + std::to_string(Seconds(t4, t5)) + " s";
  return r;
}

std::map<std::string, double> RunPython(const Args& a, const std::string& dtype) {
  std::string cmd = a.python + " " + EVL_SOURCE_DIR + "/bench/official_step.py --threads " + std::to_string(a.threads) +
                    " --batch " + std::to_string(a.batch) + " --frames " + std::to_string(a.frames) + " --iters " +
                    std::to_string(a.iters) + " --preset " + a.preset + " --dtype " + dtype;
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
    else {
      std::cerr << "unknown flag " << k << "\n";
      return 2;
    }
  }
  torch::set_num_threads(a.threads);
  std::printf("EVL %s, %d frames, batch %d clips, %d threads, %d timed iterations\n", a.preset.c_str(), a.frames,
              a.batch, a.threads, a.iters);
  std::map<std::string, double> py;
  if (a.run_python) {
    py = RunPython(a, "fp32");
    std::printf("python (%s): forward %.3f clips/s, train step %.3f clips/s\n",
                a.official_repo.empty() ? "evl_reference.py" : "official model.py", py["forward_clips_per_s"],
                py["step_clips_per_s"]);
  }
  for (auto [name, dt] : {std::pair<const char*, c10::ScalarType>{"fp32", torch::kFloat}, {"bf16", torch::kBFloat16}}) {
    Result r = Measure(a, dt);
    std::printf("evl %s backbone: forward %.3f clips/s, train step %.3f clips/s", name, r.forward_cps, r.step_cps);
    if (py.count("step_clips_per_s") && py["step_clips_per_s"] > 0)
      std::printf("  | vs python fp32: forward %.2fx, train step %.2fx", r.forward_cps / py["forward_clips_per_s"],
                  r.step_cps / py["step_clips_per_s"]);
    std::printf("\n    step breakdown: %s\n", r.breakdown.c_str());
  }
  return 0;
}
