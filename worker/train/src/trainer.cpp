// The training loop of one rank. A batch goes: Loader (dataio: decode, augment, stack into a
// pinned tensor) -> TrainStep::ForwardBackward (micro-batches under autocast; the reducer's hooks
// all-reduce gradient buckets during the last backward) -> reducer.Finish (the ranks meet) ->
// TrainStep::Unscale/Apply (loss scaler, clipping, AdamW). Everything else here is bookkeeping:
// metrics, evaluation, checkpoints, the stop signal.
#include "evl/trainer.h"

#include <glog/logging.h>
#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <iomanip>
#include <sstream>

#include "config.h"
#include "evl/checkpoint_manager.h"
#include "evl/dataset.h"
#include "evl/evaluator.h"
#include "evl/fault_injection.h"
#include "evl/file_util.h"
#include "evl/grad_sync.h"
#include "evl/loader.h"
#include "evl/model_factory.h"
#include "evl/npy.h"
#include "evl/sampler.h"
#include "evl/runtime_info.h"
#include "evl/schedule.h"
#include "evl/stop_signal.h"
#include "evl/train_step.h"
#include "evl/weights.h"
#include "metrics.h"
#include "run_setup.h"
#include "train_state.h"

namespace evl {
namespace {

using Clock = std::chrono::steady_clock;
double Since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

std::string Hms(double seconds) {
  const int64_t s = static_cast<int64_t>(seconds);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", s / 3600, (s / 60) % 60, s % 60);
  return buf;
}

AutocastDtype AutocastOf(Precision p) {
  return p == FP16 ? AutocastDtype::kHalf : p == BF16 ? AutocastDtype::kBFloat16 : AutocastDtype::kOff;
}

// Throughput and waiting over the steps since the last log line.
struct Window {
  Clock::time_point start = Clock::now();
  double data_wait_s = 0, comm_wait_s = 0;
  double decoders_idle_s = 0;  // per decode thread: time waiting because every batch ahead was ready
  int64_t clips = 0, steps = 0;
};

void LogProgress(int64_t step, const TrainConfig& t, double loss, double top1, double top5, double lr,
                 const Window& w, double eta_s, int world, const at::Tensor& skipped) {
  const double span = std::max(1e-9, Since(w.start)), cps = w.clips / span;
  LOG(INFO) << "step " << step + 1 << "/" << t.num_steps() << std::fixed << std::setprecision(4) << "  loss " << loss
            << std::setprecision(1) << "  top1 " << top1 << "  top5 " << top5 << std::scientific << std::setprecision(2)
            << "  lr " << lr << std::fixed << std::setprecision(1) << "  clips/s " << cps << " (" << cps / world
            << "/rank)  data-wait " << 100 * w.data_wait_s / span << "% (decoders idle, queue full: "
            << 100 * w.decoders_idle_s / span << "%)  comm-wait " << 100 * w.comm_wait_s / span
            << "%  eta " << Hms(eta_s) << "  skipped "
            << skipped[0].item<int64_t>() << " attempt(s), " << skipped[1].item<int64_t>() << " file(s)";
}

// The state with its training time brought up to date, for a snapshot.
const TrainState& Timed(TrainState* state, double elapsed_s) {
  state->elapsed_s = elapsed_s;
  return *state;
}

void ExportFinalParameters(EVLTransformerImpl& model, const std::string& run_dir) {
  std::vector<torch::Tensor> flat;
  std::string index;
  int64_t offset = 0;
  for (auto& p : model.named_parameters()) {
    flat.push_back(p.value().detach().reshape({-1}).to(torch::kCPU));
    index += p.key() + " " + std::to_string(offset) + " " + std::to_string(p.value().numel()) + "\n";
    offset += p.value().numel();
  }
  WriteFileAtomically(run_dir + "/final_params.txt", index);
  WriteNpy(run_dir + "/final_params.npy", torch::cat(flat));
}

}  // namespace

int RunTraining(const EvlConfig& input_config, Communicator& comm, const RankContext& ctx, const TrainFlags& flags) {
  EvlConfig config = input_config;
  const TrainConfig& t = config.train();
  const int rank = comm.rank(), world = comm.world();
  const bool lead = rank == 0;
  if (t.batch_size() % (world * t.batch_split()))
    throw std::invalid_argument("train.batch_size " + std::to_string(t.batch_size()) + " must divide by world (" +
                                std::to_string(world) + ") x train.batch_split (" + std::to_string(t.batch_split()) + ")");
  const torch::Device device(ctx.device);
  const Precision precision = ResolvePrecision(t, device);  // checked before anything is written or built
  if (lead) MakeDirectories(t.run_dir());
  ResolveDataPaths(&config, comm);

  // --- the recipe: model, optimizer, loss scaler, gradient reducer, data
  torch::manual_seed(static_cast<uint64_t>(t.seed()));  // identical decoder init on every rank
  EVLTransformer model = BuildModel(config, device);
  auto dataset = std::make_shared<VideoClipDataset>(DatasetOptionsFromConfig(config, true));
  auto optimizer = MakeOptimizer(*model, t);
  std::unique_ptr<DynamicLossScaler> scaler;
  if (precision == FP16) scaler = std::make_unique<DynamicLossScaler>();
  GradientReducer reducer(model->parameters(), &comm, config.dist().bucket_size_mb());
  TrainStep train_step(*model, *optimizer, model->parameters(), scaler.get(),
                       {t.batch_split(), t.label_smoothing(), AutocastOf(precision), device.is_cuda(), t.grad_clip()});
  TrainState state{model, *optimizer, scaler.get()};

  // --- where to start: fresh, initialised from weights, or resumed
  if (!flags.init_from.empty()) {
    // Fine-tuning (MMAction2's load_from): a head for another class count stays as initialised.
    const LoadReport loaded = LoadTrainedWeights(*model, flags.init_from, /*skip_reshaped=*/true);
    if (lead) {
      for (const auto& r : loaded.reshaped)
        LOG(WARNING) << "--init-from: not loading " << r << " (another shape in " << flags.init_from
                     << "; fine-tuning to model.num_classes " << config.model().num_classes() << "?): left as initialised";
      LOG(INFO) << "initialised from " << flags.init_from;
    }
  }
  int64_t start_step = 0;
  const std::string resume = ChooseResumeCheckpoint(flags.resume, t, comm);
  if (!resume.empty()) {
    const CheckpointState saved = ReadCheckpointFile(resume);
    CheckResumeConfig(saved.config_text, config, resume, flags.force_resume, lead);
    Restore(saved, &state, resume);
    start_step = saved.step;
    if (lead) {
      LOG(INFO) << "resumed from " << resume << " at step " << start_step << " (saved by " << saved.world_size
                << " rank(s), now " << world << ")";
      for (const auto& moved : SetAsideCheckpointsAfter(t.run_dir(), start_step))
        LOG(WARNING) << moved << " is from a later step of an abandoned continuation: moved to checkpoints/superseded-"
                     << start_step << "/";
    }
  }
  CheckRanksAgree(config, *model, dataset->size(), start_step, comm);
  BroadcastParameters(*model, comm);

  GlobalSampler sampler(dataset->size(), t.batch_size(), static_cast<uint64_t>(t.seed()));
  Loader loader(dataset, [&sampler, rank, world](int64_t step) { return sampler.RankIndices(step, rank, world); },
                start_step, t.num_steps(), config.data().num_workers(), config.data().prefetch_batches(),
                /*pin_memory=*/device.is_cuda());
  std::unique_ptr<AsyncCheckpointer> checkpointer;
  std::unique_ptr<MetricsLog> metrics;
  if (lead) {
    checkpointer = std::make_unique<AsyncCheckpointer>(t.run_dir(), t.keep_last());
    metrics = std::make_unique<MetricsLog>(t.run_dir(), start_step);
    LOG(INFO) << "training: " << world << " rank(s) x " << ctx.threads << " thread(s), device " << device
              << ", global batch " << t.batch_size() << " (split " << t.batch_split() << "), " << t.num_steps()
              << " steps, dataset " << dataset->size() << " videos, comm " << comm.backend() << " ("
              << reducer.num_buckets() << " gradient bucket(s), " << reducer.bytes() << " bytes)";
  }

  // --- the loop
  const auto start = Clock::now();
  const double elapsed_before = state.elapsed_s;  // earlier runs of this training, from the checkpoint
  double last_top1 = -1;
  int64_t last_eval_step = -1;
  Window window;
  double room_wait_seen = loader.counters().room_wait_s;  // summed over the decode threads
  const int decode_threads = std::max(1, loader.counters().workers);
  int nonfinite_steps = 0;  // in a row
  int64_t step = start_step;
  for (; step < t.num_steps(); ++step) {
    Faults().BeforeStep(step, rank);
    const LoaderCounters before = loader.counters();
    Batch batch;
    if (!loader.Next(&batch)) break;
    const LoaderCounters after = loader.counters();
    window.data_wait_s += after.wait_s - before.wait_s;
    // Decode threads wait for room while this thread computes: count from the last step's reading.
    window.decoders_idle_s += (after.room_wait_s - room_wait_seen) / decode_threads;
    room_wait_seen = after.room_wait_s;
    const double lr = LearningRate(t, step);
    for (auto& g : optimizer->param_groups()) static_cast<torch::optim::AdamWOptions&>(g.options()).lr(lr);
    model->train();
    // Dropout masks from a generator seeded by (seed, step, rank): reproducible, and resumable.
    torch::manual_seed(static_cast<uint64_t>(t.seed()) * 1000003ULL + static_cast<uint64_t>(step) * 131ULL +
                       static_cast<uint64_t>(rank) + 1);
    const auto totals = train_step.ForwardBackward(batch.clips, batch.labels, [&] { reducer.Prepare(); });
    window.comm_wait_s += reducer.Finish();
    // The step's one host synchronisation: loss, top-1/5 counts and the overflow flag together.
    // Gradients are equal on every rank after the all-reduce, so every rank skips an overflow alike.
    const auto host = torch::cat({totals, train_step.Unscale().to(torch::kDouble).reshape({1})}).to(torch::kCPU);
    const bool overflow = host[3].item<double>() > 0;  // with or without a scaler: the update is skipped
    if (overflow && scaler && lead)
      LOG(WARNING) << "step " << step + 1 << ": inf/NaN gradient at loss scale " << scaler->scale()
                   << "; step skipped, scale halved";
    train_step.Apply(overflow);

    // Step metrics and the stop flag travel together, so every rank agrees on stopping.
    auto stats = torch::cat({host.narrow(0, 0, 3), torch::tensor({static_cast<double>(batch.labels.size(0)),
                                                                  static_cast<double>(StopSignal() != 0)},
                                                                 torch::kDouble),
                             train_step.ParametersNonFinite().to(torch::kCPU, torch::kDouble).reshape({1})});
    const auto metrics_t0 = Clock::now();
    comm.AllReduce(stats, ReduceOp::kSum, "step metrics");
    window.comm_wait_s += Since(metrics_t0);  // a second synchronisation point every step
    const double loss = stats[0].item<double>() / world, n = stats[3].item<double>();
    const double top1 = 100 * stats[1].item<double>() / n, top5 = 100 * stats[2].item<double>() / n;
    const bool stop = stats[4].item<double>() > 0;
    window.clips += static_cast<int64_t>(n);
    ++window.steps;
    if (lead) metrics->Step(step + 1, loss, top1, top5, lr);
    // The loss is summed over ranks and the gradients all-reduced, so every rank decides alike.
    const bool nonfinite = !std::isfinite(loss) || (overflow && !scaler);
    nonfinite_steps = nonfinite ? nonfinite_steps + 1 : 0;
    if (stats[5].item<double>() > 0) {  // the update itself overflowed: it cannot be skipped any more
      if (lead) {
        metrics->Flush();
        LOG(ERROR) << "training diverged: the update of step " << step + 1 << " made parameters NaN/Inf (lr " << lr
                   << "); stopping without saving it. The checkpoints in " << t.run_dir() << "/checkpoints are "
                   << "from before; lower train.lr or set train.grad_clip, then resume.";
      }
      return kExitDiverged;
    }
    if (nonfinite && lead)
      LOG(WARNING) << "step " << step + 1 << ": " << (std::isfinite(loss) ? "NaN/Inf gradients" : "loss " + std::to_string(loss))
                   << "; step skipped (" << nonfinite_steps << " in a row, train.nonfinite_patience "
                   << t.nonfinite_patience() << ")";
    if (nonfinite_steps >= std::max(1, t.nonfinite_patience())) {
      if (lead) {
        metrics->Flush();
        LOG(ERROR) << "training diverged: " << nonfinite_steps << " steps in a row with a NaN/Inf loss or gradients "
                   << "(steps " << step + 2 - nonfinite_steps << "-" << step + 1 << "), each skipped, so no parameter "
                   << "and no checkpoint in " << t.run_dir() << "/checkpoints holds a NaN. Check the data and "
                   << "data.mean/std, lower train.lr, set train.grad_clip or use train.precision FP32/BF16, then resume.";
      }
      return kExitDiverged;
    }
    if ((step + 1) % std::max(1, t.print_freq()) == 0 || step + 1 == t.num_steps()) {
      // Summed over ranks: a file that fails on two ranks counts twice.
      const LoaderCounters counters = loader.counters();
      const auto skipped = torch::tensor({counters.skipped, counters.skipped_files}, torch::kLong);
      comm.AllReduce(skipped, ReduceOp::kSum, "skipped videos");
      if (lead) {
        LogProgress(step, t, loss, top1, top5, lr, window,
                    RemainingSeconds(Since(start), start_step, step + 1, t.num_steps()), world, skipped);
        const double span = std::max(1e-9, Since(window.start));
        MetricsLog::Window w;
        w.top1 = top1;
        w.top5 = top5;
        w.clips_per_s = window.clips / span;
        w.data_wait = window.data_wait_s / span;
        w.comm_wait = window.comm_wait_s / span;
        w.loss_scale = scaler ? scaler->scale() : 0;
        w.grad_norm = train_step.GradNorm();
        w.host_peak_mib = PeakResidentBytes() / (1 << 20);
        if (device.is_cuda()) w.gpu_peak_mib = CudaPeakAllocatedBytes(device.index()) / (1 << 20);
        metrics->Progress(step + 1, w);
        metrics->Flush();
      }
      window = Window();
    }

    const bool last = step + 1 == t.num_steps();
    const bool eval_now = !stop && !config.data().val_list().empty() &&
                          ((t.eval_freq() > 0 && (step + 1) % t.eval_freq() == 0) || last);
    if (eval_now) {
      Faults().At(FaultPoint::kEval);
      if (lead) MakeDirectories(t.run_dir() + "/eval");
      const EvalReport report = Evaluate(model, config, comm, device, t.run_dir() + "/eval");
      if (lead) {
        LOG(INFO) << "eval at step " << step + 1 << ": top1 " << std::fixed << std::setprecision(2) << report.top1_all
                  << "  top5 " << report.top5_all << " over all " << report.videos << " videos (" << report.skipped
                  << " undecodable; over decoded: top1 " << report.top1_decoded << ")";
        metrics->Eval(step + 1, report);
        last_top1 = report.top1_all;
        last_eval_step = step + 1;
        metrics->Flush();
        if (config.eval().keep_best() && report.top1_all > state.best_top1) {
          state.best_top1 = report.top1_all;
          state.best_step = step + 1;
          // Written synchronously beside the rotating checkpoints; retention never deletes it.
          WriteCheckpointFile(BestCheckpointPath(t.run_dir()),
                              Snapshot(Timed(&state, elapsed_before + Since(start)), config, step + 1, world, lr));
          LOG(INFO) << "new best top1 " << state.best_top1 << ": " << BestCheckpointPath(t.run_dir());
        }
      }
    }
    // After the evaluation, so that a checkpoint of this step knows the best top-1 so far.
    if (lead && (stop || last || (t.save_freq() > 0 && (step + 1) % t.save_freq() == 0))) {
      Faults().At(FaultPoint::kSave);
      checkpointer->Save(Snapshot(Timed(&state, elapsed_before + Since(start)), config, step + 1, world, lr));
      if (stop) {
        const bool ok = checkpointer->Wait();
        LOG(WARNING) << "stop signal: " << (ok ? "checkpoint saved" : "checkpoint FAILED: " + checkpointer->LastError())
                     << " at step " << step + 1 << "; exiting with status " << kExitPreempted << " (resume to continue)";
      }
    }
    if (stop) {
      // The other ranks wait here while rank 0 writes: the save's own deadline, not the stall timeout.
      comm.BroadcastString("", 0, "stop after checkpoint", config.dist().checkpoint_timeout_s());
      return kExitPreempted;
    }
  }
  if (lead && !checkpointer->Wait()) LOG(ERROR) << "the last checkpoint failed: " << checkpointer->LastError();
  if (lead) {
    ExportFinalParameters(*model, t.run_dir());
    const double run_s = Since(start);
    std::ostringstream summary;
    summary << std::fixed << std::setprecision(2) << "summary: steps " << start_step + 1 << "-" << step << " of "
            << t.num_steps() << " in " << Hms(run_s) << " ("
            << (step - start_step) * static_cast<double>(t.batch_size()) / std::max(1e-9, run_s) << " clips/s), "
            << Hms(elapsed_before + run_s) << " of training in all";
    if (last_eval_step > 0) summary << "; final eval top1 " << last_top1 << " after step " << last_eval_step;
    if (state.best_top1 >= 0)
      summary << "; best top1 " << state.best_top1 << " after step " << state.best_step << " ("
              << BestCheckpointPath(t.run_dir()) << ")";
    LOG(INFO) << summary.str();
    LOG(INFO) << "metrics in " << t.run_dir() << "/metrics.jsonl, TensorBoard in " << t.run_dir();
  }
  return 0;
}

}  // namespace evl
