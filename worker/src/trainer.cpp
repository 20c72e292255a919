#include "evl/trainer.h"

#include <glog/logging.h>
#include <sys/stat.h>
#include <torch/torch.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <thread>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <iomanip>
#include <sstream>

#include "config.h"
#include "evl/autocast.h"
#include "evl/checkpoint.h"
#include "evl/dataset.h"
#include "evl/evaluator.h"
#include "evl/weights.h"
#include "evl/grad_sync.h"
#include "evl/loader.h"
#include "evl/loss_scaler.h"
#include "evl/model_factory.h"
#include "evl/npy.h"
#include "evl/sampler.h"
#include "evl/synth.h"
#include "evl/tensorboard.h"
#include "evl/video_reader.h"

namespace evl {
namespace {

using Clock = std::chrono::steady_clock;
double Since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

double LearningRate(const TrainConfig& t, int64_t step) {
  const double base = t.lr();
  const int64_t warm = t.warmup_steps();
  if (step < warm) return base * (step + 1) / warm;
  const double progress = static_cast<double>(step - warm) / std::max<int64_t>(1, t.num_steps() - warm);
  return base * 0.5 * (1.0 + std::cos(M_PI * progress));
}

// Everything that must agree across ranks, one fact per line, so a mismatch names its first line.
std::string Fingerprint(const EvlConfig& c, torch::nn::Module& model, int64_t dataset_size) {
  std::ostringstream s;
  EvlConfig copy = c;
  copy.mutable_train()->clear_threads();  // may legitimately differ per rank
  s << ConfigToText(copy);
  for (const auto& p : model.named_parameters()) s << "param " << p.key() << " " << p.value().sizes() << "\n";
  s << "train dataset size " << dataset_size << "\n";
  return s.str();
}

void CheckRanksAgree(const std::string& mine, Communicator& comm) {
  const std::string root = comm.BroadcastString(mine, 0, "config check");
  std::string diff;
  if (root != mine) {
    std::istringstream a(root), b(mine);
    std::string la, lb;
    int line = 0;
    while (true) {
      ++line;
      const bool ha = static_cast<bool>(std::getline(a, la)), hb = static_cast<bool>(std::getline(b, lb));
      if (!ha && !hb) break;
      if (!ha || !hb || la != lb) {
        diff = "line " + std::to_string(line) + ": rank 0 has '" + (ha ? la : "<end>") + "', rank " +
               std::to_string(comm.rank()) + " has '" + (hb ? lb : "<end>") + "'";
        break;
      }
    }
  }
  auto bad = torch::tensor({diff.empty() ? 0L : 1L}, torch::kLong);
  comm.AllReduce(bad, ReduceOp::kSum, "config check result");
  if (!diff.empty()) throw std::runtime_error("ranks disagree on the config/model/dataset, first difference at " + diff);
  if (bad.item<int64_t>() > 0)
    throw std::runtime_error("ranks disagree on the config/model/dataset (" + std::to_string(bad.item<int64_t>()) +
                             " rank(s) differ from rank 0; see their logs)");
}

void BroadcastParameters(torch::nn::Module& model, Communicator& comm) {
  torch::NoGradGuard ng;
  std::vector<torch::Tensor> flat;
  for (auto& p : model.parameters()) flat.push_back(p.detach().reshape({-1}));
  auto buf = torch::cat(flat).contiguous();
  comm.Broadcast(buf, 0, "initial parameters");
  int64_t off = 0;
  for (auto& p : model.parameters()) {
    p.copy_(buf.narrow(0, off, p.numel()).view_as(p));
    off += p.numel();
  }
}

std::string Eta(double seconds) {
  const int64_t s = static_cast<int64_t>(seconds);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", s / 3600, (s / 60) % 60, s % 60);
  return buf;
}

std::atomic<int> g_stop_signal{0};

void OnStopSignal(int sig) { g_stop_signal.store(sig); }

// The optimizer's per-parameter state key: the TensorImpl address, as a string in LibTorch 1.x
// (what c10::guts::to_string printed) and as the pointer itself in later versions.
template <typename Key>
Key OptimKeyAs(const torch::Tensor& p) {
  if constexpr (std::is_same_v<Key, std::string>) {
    std::ostringstream s;
    s << p.unsafeGetTensorImpl();
    return s.str();
  } else {
    return p.unsafeGetTensorImpl();
  }
}
using OptimStateKey = std::decay_t<decltype(std::declval<torch::optim::AdamW&>().state())>::key_type;
OptimStateKey OptimKey(const torch::Tensor& p) { return OptimKeyAs<OptimStateKey>(p); }

CheckpointState Snapshot(EVLTransformer& model, torch::optim::AdamW& opt, const DynamicLossScaler* scaler,
                         const EvlConfig& config, int64_t next_step, int world, double lr) {
  CheckpointState s;
  s.step = next_step;
  s.world_size = world;
  s.seed = config.train().seed();
  s.lr = lr;
  s.config_text = ConfigToText(config);
  const auto& bb = config.model().backbone();
  s.backbone_preset = bb.preset();
  s.backbone_weights = bb.weights();
  s.backbone_init_seed = bb.init_seed();
  if (!bb.weights().empty()) {
    static std::map<std::string, std::pair<uint64_t, uint32_t>> digests;  // the file does not change in a run
    if (!digests.count(bb.weights())) digests[bb.weights()] = FileDigest(bb.weights());
    std::tie(s.backbone_bytes, s.backbone_crc32c) = digests[bb.weights()];
  }
  torch::NoGradGuard ng;
  for (const auto& p : model->named_parameters()) {
    s.tensors.emplace_back("model/" + p.key(), p.value().detach().to(torch::kCPU).clone());
    auto it = opt.state().find(OptimKey(p.value()));
    if (it == opt.state().end()) continue;
    auto& st = static_cast<torch::optim::AdamWParamState&>(*it->second);
    s.tensors.emplace_back("optim/" + p.key() + "/exp_avg", st.exp_avg().to(torch::kCPU).clone());
    s.tensors.emplace_back("optim/" + p.key() + "/exp_avg_sq", st.exp_avg_sq().to(torch::kCPU).clone());
    s.tensors.emplace_back("optim/" + p.key() + "/step", torch::tensor({st.step()}, torch::kLong));
  }
  if (scaler) {
    s.tensors.emplace_back("scaler/scale", torch::tensor({scaler->scale()}, torch::kDouble));
    s.tensors.emplace_back("scaler/good_steps", torch::tensor({scaler->good_steps()}, torch::kLong));
  }
  return s;
}

void Restore(const CheckpointState& s, EVLTransformer& model, torch::optim::AdamW& opt, DynamicLossScaler* scaler,
             const std::string& path) {
  std::map<std::string, torch::Tensor> t(s.tensors.begin(), s.tensors.end());
  const auto scale = t.find("scaler/scale"), good = t.find("scaler/good_steps");
  if (scaler && scale != t.end() && good != t.end())
    scaler->Restore(scale->second.item<double>(), good->second.item<int64_t>());
  torch::NoGradGuard ng;
  for (const auto& p : model->named_parameters()) {
    auto it = t.find("model/" + p.key());
    if (it == t.end()) throw CheckpointError(path + ": has no tensor 'model/" + p.key() + "'");
    if (!it->second.sizes().equals(p.value().sizes()))
      throw CheckpointError(path + ": tensor 'model/" + p.key() + "' has another shape than the model's");
    p.value().copy_(it->second);
    auto avg = t.find("optim/" + p.key() + "/exp_avg"), sq = t.find("optim/" + p.key() + "/exp_avg_sq"),
         step = t.find("optim/" + p.key() + "/step");
    if (avg == t.end() || sq == t.end() || step == t.end()) continue;
    auto st = std::make_unique<torch::optim::AdamWParamState>();
    st->step(step->second.item<int64_t>());
    st->exp_avg(avg->second.to(p.value().device()).clone());
    st->exp_avg_sq(sq->second.to(p.value().device()).clone());
    opt.state()[OptimKey(p.value())] = std::move(st);
  }
}

}  // namespace

void InstallStopSignalHandlers() {
  std::signal(SIGUSR1, OnStopSignal);
  std::signal(SIGTERM, OnStopSignal);
}

std::vector<std::string> MathConfigDifferences(const EvlConfig& saved, const EvlConfig& now) {
  std::vector<std::string> diffs;
  auto cmp = [&](const std::string& field, const google::protobuf::Message& a, const google::protobuf::Message& b) {
    const std::string ta = ConfigToText(a), tb = ConfigToText(b);
    if (ta == tb) return;
    std::istringstream sa(ta), sb(tb);
    std::string la, lb;
    while (true) {
      const bool ha = static_cast<bool>(std::getline(sa, la)), hb = static_cast<bool>(std::getline(sb, lb));
      if (!ha && !hb) break;
      if (la != lb) diffs.push_back(field + ": " + (ha ? la : "<none>") + " -> " + (hb ? lb : "<none>"));
    }
  };
  cmp("model", saved.model(), now.model());
  auto math_train = [](const TrainConfig& t) {
    TrainConfig m;
    m.set_batch_size(t.batch_size());
    m.set_lr(t.lr());
    m.set_weight_decay(t.weight_decay());
    m.set_no_decay_norm_bias(t.no_decay_norm_bias());
    m.set_num_steps(t.num_steps());
    m.set_warmup_steps(t.warmup_steps());
    m.set_seed(t.seed());
    m.set_label_smoothing(t.label_smoothing());
    m.set_grad_clip(t.grad_clip());
    return m;
  };
  cmp("train", math_train(saved.train()), math_train(now.train()));
  auto math_data = [](const DataConfig& d) {
    DataConfig m;
    m.set_sampling_rate(d.sampling_rate());
    m.set_tsn_sampling(d.tsn_sampling());
    m.set_mirror(d.mirror());
    m.set_random_resized_crop_min_scale(d.random_resized_crop_min_scale());
    *m.mutable_mean() = d.mean();
    *m.mutable_std() = d.std();
    return m;
  };
  cmp("data", math_data(saved.data()), math_data(now.data()));
  return diffs;
}

void ResolveDataPaths(EvlConfig* config, Communicator& comm) {
  DataConfig* d = config->mutable_data();
  if (!d->train_list().empty()) return;
  const std::string dir = config->train().run_dir() + "/synth";
  if (comm.rank() == 0 && !PathExists(dir + "/train.txt")) {
    MakeDirectories(config->train().run_dir());
    SynthOptions o;
    const auto& s = d->synthetic();
    o.out_dir = dir;
    o.classes = s.classes();
    o.videos = s.videos();
    o.frames = s.frames();
    o.width = s.width();
    o.height = s.height();
    o.seed = static_cast<uint64_t>(s.seed());
    LOG(INFO) << "writing the synthetic dataset (" << o.videos << " videos, " << o.classes << " classes) to " << dir;
    WriteSynthDataset(o);
  }
  comm.BroadcastString("", 0, "synthetic dataset ready");
  d->set_train_list(dir + "/train.txt");
  d->set_val_list(dir + "/val.txt");
  d->set_data_root(dir);
}

int RunTraining(const EvlConfig& input_config, Communicator& comm, const RankContext& ctx, const TrainFlags& flags) {
  EvlConfig config = input_config;
  const TrainConfig& t = config.train();
  const bool lead = comm.rank() == 0;
  if (t.batch_size() % (comm.world() * t.batch_split()))
    throw std::invalid_argument("train.batch_size " + std::to_string(t.batch_size()) + " must divide by world (" +
                                std::to_string(comm.world()) + ") x train.batch_split (" +
                                std::to_string(t.batch_split()) + ")");
  const torch::Device device(ctx.device);
  // Decoder compute precision under autocast: FP16 with a dynamic loss scaler (CUDA; the official
  // default), BF16 (no scaler needed), or FP32. Checked before anything is written or built.
  Precision precision = t.precision();
  if (precision == AUTO) precision = device.is_cuda() ? FP16 : FP32;
  if (precision == FP16 && !device.is_cuda())
    throw std::invalid_argument("train.precision FP16 needs CUDA (CPU has no fp16 matmul); use BF16 or FP32");
  std::unique_ptr<DynamicLossScaler> scaler;
  if (precision == FP16) scaler = std::make_unique<DynamicLossScaler>();
  if (lead) MakeDirectories(t.run_dir());
  ResolveDataPaths(&config, comm);

  torch::manual_seed(static_cast<uint64_t>(t.seed()));  // identical decoder init on every rank
  EVLTransformer model = BuildModel(config, device);
  auto dataset = std::make_shared<VideoClipDataset>(DatasetOptionsFromConfig(config, true));

  std::vector<torch::Tensor> params;
  for (auto& p : model->parameters()) params.push_back(p);
  GradientReducer reducer(params, &comm, config.dist().bucket_size_mb());

  std::vector<torch::optim::OptimizerParamGroup> groups;
  if (t.no_decay_norm_bias()) {
    std::vector<torch::Tensor> decay, no_decay;
    for (auto& p : model->named_parameters()) {
      const std::string& k = p.key();
      const bool exempt = p.value().dim() < 2 || k.find("norm") != std::string::npos ||
                          k.find("pos_embed") != std::string::npos || k.find("cls_token") != std::string::npos;
      (exempt ? no_decay : decay).push_back(p.value());
    }
    groups.emplace_back(decay, std::make_unique<torch::optim::AdamWOptions>(
                                   torch::optim::AdamWOptions(t.lr()).weight_decay(t.weight_decay())));
    groups.emplace_back(no_decay,
                        std::make_unique<torch::optim::AdamWOptions>(torch::optim::AdamWOptions(t.lr()).weight_decay(0)));
  } else {
    groups.emplace_back(params, std::make_unique<torch::optim::AdamWOptions>(
                                    torch::optim::AdamWOptions(t.lr()).weight_decay(t.weight_decay())));
  }
  torch::optim::AdamW optimizer(std::move(groups));

  if (!flags.init_from.empty()) {
    LoadTrainedWeights(*model, flags.init_from);
    if (lead) LOG(INFO) << "initialised from " << flags.init_from;
  }
  int64_t start_step = 0;
  std::string resume = flags.resume;
  if (resume.empty() && t.auto_resume()) {
    std::vector<std::string> skipped;
    resume = FindNewestValidCheckpoint(t.run_dir(), &skipped);
    if (lead)
      for (const auto& s : skipped) LOG(WARNING) << "auto-resume: skipping invalid checkpoint: " << s;
  }
  if (!resume.empty()) {
    const CheckpointState ck = ReadCheckpointFile(resume);
    EvlConfig saved;
    try {
      saved = ParseConfigText(ck.config_text, resume + " (saved config)");
    } catch (const ConfigError& e) {
      throw CheckpointError(e.what());
    }
    const auto diffs = MathConfigDifferences(saved, config);
    if (!diffs.empty()) {
      std::string list;
      for (const auto& d : diffs) list += "\n  " + d;
      if (!flags.force_resume)
        throw std::invalid_argument("refusing to resume " + resume + ": the config differs in fields that change the math:" +
                                    list + "\n(pass --force-resume to resume anyway)");
      if (lead) LOG(WARNING) << "resuming despite config differences (--force-resume):" << list;
    }
    Restore(ck, model, optimizer, scaler.get(), resume);
    start_step = ck.step;
    if (lead)
      LOG(INFO) << "resumed from " << resume << " at step " << start_step << " (saved by " << ck.world_size
                << " rank(s), now " << comm.world() << ")";
  }

  CheckRanksAgree(Fingerprint(config, *model, dataset->size()) + "start step " + std::to_string(start_step) + "\n", comm);
  BroadcastParameters(*model, comm);
  std::unique_ptr<AsyncCheckpointer> checkpointer;
  if (lead) checkpointer = std::make_unique<AsyncCheckpointer>(t.run_dir(), t.keep_last());

  GlobalSampler sampler(dataset->size(), t.batch_size(), static_cast<uint64_t>(t.seed()));
  const int rank = comm.rank(), world = comm.world();
  Loader loader(dataset, [&sampler, rank, world](int64_t step) { return sampler.RankIndices(step, rank, world); },
                start_step,
                t.num_steps(), config.data().num_workers(), config.data().prefetch_batches(),
                /*pin_memory=*/device.is_cuda());

  std::unique_ptr<TensorBoardWriter> tb;
  std::ofstream metrics;
  if (lead) {
    tb = std::make_unique<TensorBoardWriter>(t.run_dir());
    metrics.open(t.run_dir() + "/metrics.jsonl", start_step > 0 ? std::ios::app : std::ios::trunc);
    LOG(INFO) << "training: " << world << " rank(s) x " << ctx.threads << " thread(s), device " << device
              << ", global batch " << t.batch_size() << " (split " << t.batch_split() << "), " << t.num_steps()
              << " steps, dataset " << dataset->size() << " videos, comm " << comm.backend() << " ("
              << reducer.num_buckets() << " gradient bucket(s))";
  }
  const char* exit_at = std::getenv("EVL_TEST_EXIT_AT_STEP");      // test hook: simulate a dying rank
  const char* signal_at = std::getenv("EVL_TEST_SIGNAL_AT_STEP");  // test hook: preemption at a known step
  // Test hook: one rank hangs (EVL_TEST_STALL_RANK, default 1) before step EVL_TEST_STALL_AT_STEP.
  const char* stall_at = std::getenv("EVL_TEST_STALL_AT_STEP");
  const int stall_rank = std::getenv("EVL_TEST_STALL_RANK") ? std::atoi(std::getenv("EVL_TEST_STALL_RANK")) : 1;
  // Test hook: slow steps, so that a job is still training when Slurm's time-limit signal comes.
  const int step_delay_ms = std::getenv("EVL_TEST_STEP_DELAY_MS") ? std::atoi(std::getenv("EVL_TEST_STEP_DELAY_MS")) : 0;
  const int64_t local_batch = t.batch_size() / world, micro = local_batch / t.batch_split();
  const auto start = Clock::now();
  double window_start_s = 0, window_wait = 0, window_comm = 0;
  int64_t window_clips = 0;
  EvalReport last_eval;
  double best_top1 = -1;
  int64_t step = start_step;
  int exit_status = 0;
  for (; step < t.num_steps(); ++step) {
    if (exit_at && std::atoll(exit_at) == step) {
      LOG(ERROR) << "EVL_TEST_EXIT_AT_STEP: exiting at step " << step;
      std::_Exit(7);
    }
    if (signal_at && std::atoll(signal_at) == step && lead) std::raise(SIGUSR1);
    if (stall_at && std::atoll(stall_at) == step && comm.rank() == stall_rank) {
      LOG(ERROR) << "EVL_TEST_STALL_AT_STEP: rank " << stall_rank << " hangs at step " << step;
      std::this_thread::sleep_for(std::chrono::hours(1));
    }
    if (step_delay_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(step_delay_ms));
    const double wait0 = loader.counters().wait_s;
    Batch batch;
    if (!loader.Next(&batch)) break;
    window_wait += loader.counters().wait_s - wait0;
    const double lr = LearningRate(t, step);
    for (auto& g : optimizer.param_groups()) static_cast<torch::optim::AdamWOptions&>(g.options()).lr(lr);
    model->train();
    optimizer.zero_grad();
    // Dropout masks from a generator seeded by (seed, step, rank): reproducible, and resumable.
    torch::manual_seed(static_cast<uint64_t>(t.seed()) * 1000003ULL + static_cast<uint64_t>(step) * 131ULL +
                       static_cast<uint64_t>(rank) + 1);
    // Loss and top-k counts stay on the device until the step's one read-back below.
    auto totals = torch::zeros({3}, torch::TensorOptions().dtype(torch::kDouble).device(device));
    for (int j = 0; j < t.batch_split(); ++j) {
      auto x = batch.clips.narrow(0, j * micro, micro).to(device, /*non_blocking=*/true);
      auto y = batch.labels.narrow(0, j * micro, micro).to(device, /*non_blocking=*/true);
      if (j == t.batch_split() - 1) reducer.Prepare();
      torch::Tensor logits;
      {
        AutocastScope autocast(device.is_cuda(), precision == FP16   ? AutocastDtype::kHalf
                                                 : precision == BF16 ? AutocastDtype::kBFloat16
                                                                     : AutocastDtype::kOff);
        logits = model->forward(x);
      }
      logits = logits.to(torch::kFloat);  // the loss in FP32, as autocast would compute it
      auto loss = torch::nn::functional::cross_entropy(
                      logits, y, torch::nn::functional::CrossEntropyFuncOptions().label_smoothing(t.label_smoothing())) /
                  t.batch_split();
      (scaler ? loss * scaler->scale() : loss).backward();
      auto top = std::get<1>(logits.detach().topk(std::min<int64_t>(5, logits.size(1)), 1));
      totals += torch::stack({loss.detach().to(torch::kDouble), top.select(1, 0).eq(y).sum().to(torch::kDouble),
                              top.eq(y.unsqueeze(1)).any(1).sum().to(torch::kDouble)});
    }
    window_comm += reducer.Finish();
    // The gradients are the same on every rank after the all-reduce, so every rank skips alike.
    const auto found_inf = scaler ? scaler->Unscale(params).to(torch::kDouble) : torch::zeros_like(totals[0]);
    // The step's one host synchronisation: loss, top-1/5 counts and the overflow flag together.
    const auto host = torch::cat({totals, found_inf.reshape({1})}).to(torch::kCPU);
    const bool overflow = host[3].item<double>() > 0;
    if (!overflow) {
      if (t.grad_clip() > 0) torch::nn::utils::clip_grad_norm_(params, t.grad_clip());
      optimizer.step();
    } else if (lead) {
      LOG(WARNING) << "step " << step + 1 << ": inf/NaN gradient at loss scale " << scaler->scale()
                   << "; step skipped, scale halved";
    }
    if (scaler) scaler->Update(overflow);

    auto stats = torch::cat({host.narrow(0, 0, 3),
                             torch::tensor({static_cast<double>(local_batch), static_cast<double>(g_stop_signal.load() != 0)},
                                           torch::kDouble)});
    // Counted as communication wait too: it is a second synchronisation point every step.
    const auto metrics_t0 = Clock::now();
    comm.AllReduce(stats, ReduceOp::kSum, "step metrics");
    window_comm += Since(metrics_t0);
    const double loss = stats[0].item<double>() / world, n = stats[3].item<double>();
    const double top1 = 100 * stats[1].item<double>() / n, top5 = 100 * stats[2].item<double>() / n;
    window_clips += static_cast<int64_t>(n);
    // Every rank agrees on stopping: the flag travelled with the step's metrics.
    const bool stop = stats[4].item<double>() > 0;
    if (lead) {
      metrics << std::setprecision(9) << "{\"step\": " << step << ", \"loss\": " << loss << ", \"top1\": " << top1
              << ", \"top5\": " << top5 << ", \"lr\": " << lr << "}\n";
      tb->AddScalar("train/loss", static_cast<float>(loss), step);
      tb->AddScalar("train/lr", static_cast<float>(lr), step);
    }
    const bool print = (step + 1) % std::max(1, t.print_freq()) == 0 || step + 1 == t.num_steps();
    if (print) {
      const double now = Since(start), span = now - window_start_s;
      const LoaderCounters counters = loader.counters();
      // Summed over ranks: a file that fails on two ranks counts twice.
      const auto skipped = torch::tensor({counters.skipped, counters.skipped_files}, torch::kLong);
      comm.AllReduce(skipped, ReduceOp::kSum, "skipped videos");
      if (lead) {
        const double cps = window_clips / std::max(1e-9, span);
        LOG(INFO) << "step " << step + 1 << "/" << t.num_steps() << std::fixed << std::setprecision(4) << "  loss "
                  << loss << std::setprecision(1) << "  top1 " << top1 << "  top5 " << top5 << std::scientific
                  << std::setprecision(2) << "  lr " << lr << std::fixed << std::setprecision(1) << "  clips/s " << cps
                  << " (" << cps / world << "/rank)  data-wait " << 100 * window_wait / std::max(1e-9, span)
                  << "%  comm-wait " << 100 * window_comm / std::max(1e-9, span) << "%  eta "
                  << Eta(now / (step + 1) * (t.num_steps() - step - 1)) << "  skipped " << skipped[0].item<int64_t>()
                  << " attempt(s), " << skipped[1].item<int64_t>() << " file(s)";
        tb->AddScalar("train/top1", static_cast<float>(top1), step);
        tb->AddScalar("train/clips_per_s", static_cast<float>(cps), step);
        tb->Flush();
        metrics.flush();
      }
      window_start_s = now;
      window_wait = window_comm = 0;
      window_clips = 0;
    }
    const bool save_now = stop || step + 1 == t.num_steps() || (t.save_freq() > 0 && (step + 1) % t.save_freq() == 0);
    if (save_now && lead) {
      checkpointer->Save(Snapshot(model, optimizer, scaler.get(), config, step + 1, world, lr));
      if (stop) {
        const bool ok = checkpointer->Wait();
        LOG(WARNING) << "stop signal: " << (ok ? "checkpoint saved" : "checkpoint FAILED: " + checkpointer->LastError())
                     << " at step " << step + 1 << "; exiting with status " << kExitPreempted << " (resume to continue)";
      }
    }
    if (stop) {
      comm.BroadcastString("", 0, "stop after checkpoint");
      exit_status = kExitPreempted;
      break;
    }
    const bool eval_now = (t.eval_freq() > 0 && (step + 1) % t.eval_freq() == 0) || step + 1 == t.num_steps();
    if (eval_now && !config.data().val_list().empty()) {
      const std::string eval_dir = t.run_dir() + "/eval";
      if (lead) MakeDirectories(eval_dir);
      last_eval = Evaluate(model, config, comm, device, eval_dir);
      if (lead) {
        LOG(INFO) << "eval at step " << step + 1 << ": top1 " << std::fixed << std::setprecision(2) << last_eval.top1_all
                  << "  top5 " << last_eval.top5_all << " over all " << last_eval.videos << " videos ("
                  << last_eval.skipped << " undecodable; over decoded: top1 " << last_eval.top1_decoded << ")";
        metrics << "{\"eval_step\": " << step + 1 << ", \"top1\": " << last_eval.top1_all << ", \"top5\": "
                << last_eval.top5_all << ", \"videos\": " << last_eval.videos << ", \"skipped\": " << last_eval.skipped
                << "}\n";
        metrics.flush();
        if (config.eval().keep_best() && last_eval.top1_all > best_top1) {
          best_top1 = last_eval.top1_all;
          // Written synchronously beside the rotating checkpoints; retention never deletes it.
          WriteCheckpointFile(t.run_dir() + "/checkpoints/best.evlckpt",
                              Snapshot(model, optimizer, scaler.get(), config, step + 1, world, lr));
          LOG(INFO) << "new best top1 " << best_top1 << ": " << t.run_dir() << "/checkpoints/best.evlckpt";
        }
        tb->AddScalar("eval/top1", static_cast<float>(last_eval.top1_all), step);
        tb->AddScalar("eval/top5", static_cast<float>(last_eval.top5_all), step);
        tb->Flush();
      }
    }
  }
  if (lead && !checkpointer->Wait()) LOG(ERROR) << "the last checkpoint failed: " << checkpointer->LastError();
  if (exit_status != 0) return exit_status;
  if (lead) {
    std::vector<torch::Tensor> flat;
    std::ofstream index(t.run_dir() + "/final_params.txt");
    int64_t offset = 0;
    for (auto& p : model->named_parameters()) {
      flat.push_back(p.value().detach().reshape({-1}).to(torch::kCPU));
      index << p.key() << " " << offset << " " << p.value().numel() << "\n";
      offset += p.value().numel();
    }
    WriteNpy(t.run_dir() + "/final_params.npy", torch::cat(flat));
    LOG(INFO) << "done in " << Eta(Since(start)) << "; metrics in " << t.run_dir() << "/metrics.jsonl, TensorBoard in "
              << t.run_dir();
  }
  return 0;
}

}  // namespace evl
