// The training loop of one rank. A batch goes: Loader (dataio: decode, augment, stack into a
// pinned tensor) -> TrainStep::ForwardBackward (micro-batches under autocast; the reducer's hooks
// all-reduce gradient buckets during the last backward) -> reducer.Finish (the ranks meet) ->
// TrainStep::Unscale/Apply (loss scaler, clipping, AdamW), all in RunStep below. Each policy
// around it is a component with its own file: DivergenceGuard, Progress, PeriodicEvaluation,
// RunCheckpoints.
#include "evl/trainer.h"

#include <glog/logging.h>
#include <torch/torch.h>

#include <chrono>
#include <iomanip>
#include <sstream>

#include "config.h"
#include "divergence_guard.h"
#include "evl/dataset.h"
#include "evl/dataset_lists.h"
#include "evl/fault_injection.h"
#include "evl/file_util.h"
#include "evl/grad_sync.h"
#include "evl/loader.h"
#include "evl/model_factory.h"
#include "evl/npy.h"
#include "evl/preflight.h"
#include "evl/sampler.h"
#include "evl/schedule.h"
#include "evl/stop_signal.h"
#include "evl/train_step.h"
#include "evl/weights.h"
#include "metrics.h"
#include "periodic_evaluation.h"
#include "progress.h"
#include "run_checkpoints.h"
#include "run_setup.h"
#include "train_state.h"

namespace evl {
namespace {

using Clock = std::chrono::steady_clock;
double Since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

AutocastDtype AutocastOf(Precision p) {
  return p == FP16 ? AutocastDtype::kHalf : p == BF16 ? AutocastDtype::kBFloat16 : AutocastDtype::kOff;
}

// What one rank trains with, built from the config.
struct Recipe {
  Recipe(const EvlConfig& config, std::vector<VideoEntry> videos, const torch::Device& device, Precision precision,
         Communicator& comm)
      : model(BuildModel(config, device)),
        dataset(std::make_shared<VideoClipDataset>(DatasetOptionsFromConfig(config, true), std::move(videos))),
        optimizer(MakeOptimizer(*model, config.train())),
        scaler(precision == FP16 ? std::make_unique<DynamicLossScaler>() : nullptr),
        reducer(model->parameters(), &comm, config.dist().bucket_size_mb()),
        train_step(*model, *optimizer, model->parameters(), scaler.get(),
                   {config.train().batch_split(), config.train().label_smoothing(), AutocastOf(precision),
                    device.is_cuda(), config.train().grad_clip()}),
        state{model, *optimizer, scaler.get()} {}
  EVLTransformer model;
  std::shared_ptr<VideoClipDataset> dataset;
  std::unique_ptr<torch::optim::AdamW> optimizer;
  std::unique_ptr<DynamicLossScaler> scaler;
  GradientReducer reducer;
  TrainStep train_step;
  TrainState state;
};

// Where training starts: --init-from weights (fine-tuning), then the checkpoint to resume from if
// any. Returns the first step to run.
int64_t StartingPoint(const EvlConfig& config, const TrainFlags& flags, Recipe* r, Communicator& comm) {
  const bool lead = comm.rank() == 0;
  const TrainConfig& t = config.train();
  if (!flags.init_from.empty()) {
    // MMAction2's load_from: a head for another class count stays as initialised.
    const LoadReport loaded = LoadTrainedWeights(*r->model, flags.init_from, /*skip_reshaped=*/true);
    if (lead) {
      for (const auto& name : loaded.reshaped)
        LOG(WARNING) << "--init-from: not loading " << name << " (another shape in " << flags.init_from
                     << "; fine-tuning to model.num_classes " << config.model().num_classes() << "?): left as initialised";
      LOG(INFO) << "initialised from " << flags.init_from;
    }
  }
  const std::string resume = ChooseResumeCheckpoint(flags.resume, flags.restarted, t, comm);
  if (resume.empty()) return 0;
  const CheckpointState saved = ReadCheckpointFile(resume);
  CheckResumeConfig(saved.config_text, config, resume, flags.force_resume, lead);
  Restore(saved, &r->state, resume);
  if (lead) {
    LOG(INFO) << "resumed from " << resume << " at step " << saved.step << " (saved by " << saved.world_size
              << " rank(s), now " << comm.world() << ")";
    for (const auto& moved : SetAsideCheckpointsAfter(t.run_dir(), saved.step))
      LOG(WARNING) << moved << " is from a later step of an abandoned continuation: moved to checkpoints/superseded-"
                   << saved.step << "/";
  }
  return saved.step;
}

// One optimisation step on every rank: forward/backward with the gradient all-reduce, the update,
// and one all-reduce of the step's metrics that carries the stop flag, so every rank agrees.
StepResult RunStep(Recipe& r, const Batch& batch, int64_t step, const TrainConfig& t, Communicator& comm) {
  StepResult result;
  result.lr = LearningRate(t, step);
  for (auto& g : r.optimizer->param_groups()) static_cast<torch::optim::AdamWOptions&>(g.options()).lr(result.lr);
  r.model->train();
  // Dropout masks from a generator seeded by (seed, step, rank): reproducible, and resumable.
  torch::manual_seed(static_cast<uint64_t>(t.seed()) * 1000003ULL + static_cast<uint64_t>(step) * 131ULL +
                     static_cast<uint64_t>(comm.rank()) + 1);
  const auto totals = r.train_step.ForwardBackward(batch.clips, batch.labels, [&] { r.reducer.Prepare(); });
  result.comm_wait_s = r.reducer.Finish();
  // The step's one host synchronisation: loss, top-1/5 counts and the overflow flag together.
  // Gradients are equal on every rank after the all-reduce, so every rank skips an overflow alike.
  const auto host = torch::cat({totals, r.train_step.Unscale().to(torch::kDouble).reshape({1})}).to(torch::kCPU);
  result.overflow = host[3].item<double>() > 0;  // with or without a scaler: the update is skipped
  if (result.overflow && r.scaler && comm.rank() == 0)
    LOG(WARNING) << "step " << step + 1 << ": inf/NaN gradient at loss scale " << r.scaler->scale()
                 << "; step skipped, scale halved";
  r.train_step.Apply(result.overflow);

  auto stats = torch::cat({host.narrow(0, 0, 3),
                           torch::tensor({static_cast<double>(batch.labels.size(0)), static_cast<double>(StopSignal() != 0)},
                                         torch::kDouble),
                           r.train_step.ParametersNonFinite().to(torch::kCPU, torch::kDouble).reshape({1})});
  const auto t0 = Clock::now();
  comm.AllReduce(stats, ReduceOp::kSum, "step metrics");
  result.comm_wait_s += Since(t0);  // a second synchronisation point every step
  const double n = stats[3].item<double>();
  result.loss = stats[0].item<double>() / comm.world();
  result.top1 = 100 * stats[1].item<double>() / n;
  result.top5 = 100 * stats[2].item<double>() / n;
  result.clips = static_cast<int64_t>(n);
  result.stop = stats[4].item<double>() > 0;
  result.update_nonfinite = stats[5].item<double>() > 0;
  return result;
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
  WriteFileAtomically(run_dir + "/final_params.npy", NpyBytes(torch::cat(flat)));
}

// A list rank 0 could not use stops the job as preflight would have: status 2, one report.
int ReportListProblems(const std::vector<std::string>& problems, bool lead) {
  LOG_IF(ERROR, lead) << PreflightReport(problems);
  return kExitUsage;
}

void LogSummary(const TrainConfig& t, int64_t start_step, int64_t end_step, double run_s, double elapsed_before,
                const PeriodicEvaluation& evaluation, const TrainState& state) {
  std::ostringstream s;
  s << std::fixed << std::setprecision(2) << "summary: steps " << start_step + 1 << "-" << end_step << " of "
    << t.num_steps() << " in " << Hms(run_s) << " ("
    << (end_step - start_step) * static_cast<double>(t.batch_size()) / std::max(1e-9, run_s) << " clips/s), "
    << Hms(elapsed_before + run_s) << " of training in all";
  if (evaluation.last_step() > 0)
    s << "; final eval top1 " << evaluation.last_top1() << " after step " << evaluation.last_step();
  if (state.best_top1 >= 0)
    s << "; best top1 " << state.best_top1 << " after step " << state.best_step << " ("
      << BestCheckpointPath(t.run_dir()) << ")";
  LOG(INFO) << s.str();
  LOG(INFO) << "metrics in " << t.run_dir() << "/metrics.jsonl, TensorBoard in " << t.run_dir();
}

}  // namespace

int RunTraining(const EvlConfig& input_config, Communicator& comm, const RankContext& ctx, const TrainFlags& flags) {
  EvlConfig config = input_config;
  const TrainConfig& t = config.train();
  const bool lead = comm.rank() == 0;
  CheckBatchDivides(t, comm.world());
  const torch::Device device(ctx.device);
  const Precision precision = ResolvePrecision(t, device);  // checked before anything is written or built
  // The checkpoints' directory first: a run that could not save should fail now, not after training.
  if (lead) {
    MakeDirectories(t.run_dir() + "/checkpoints");
    for (const auto& f : RemoveUnfinishedWrites(t.run_dir())) LOG(INFO) << "removed an unfinished checkpoint write: " << f;
  }
  ResolveDataPaths(&config, comm);
  DatasetLists lists = ReadDatasetLists(config, /*train=*/true, /*val=*/true, comm);  // once per job
  if (!lists.problems.empty()) return ReportListProblems(lists.problems, lead);

  torch::manual_seed(static_cast<uint64_t>(t.seed()));  // identical decoder init on every rank
  Recipe r(config, std::move(lists.train), device, precision, comm);
  TrainState& state = r.state;
  const int64_t start_step = StartingPoint(config, flags, &r, comm);
  CheckRanksAgree(config, *r.model, r.dataset->size(), start_step, comm);
  BroadcastParameters(*r.model, comm);

  GlobalSampler sampler(r.dataset->size(), t.batch_size(), static_cast<uint64_t>(t.seed()));
  Loader loader(
      r.dataset, [&sampler, &comm](int64_t step) { return sampler.RankIndices(step, comm.rank(), comm.world()); },
      start_step, t.num_steps(), config.data().num_workers(), config.data().prefetch_batches(),
      /*pin_memory=*/device.is_cuda());
  const auto metrics = lead ? std::make_unique<MetricsLog>(t.run_dir(), start_step) : nullptr;
  RunCheckpoints checkpoints(config, comm.world(), lead);
  PeriodicEvaluation evaluation(r.model, config, lists.val, comm, device, metrics.get());
  DivergenceGuard guard(t.nonfinite_patience(), r.scaler != nullptr, t.run_dir());
  Progress progress(t, comm, loader, metrics.get(), r.scaler.get(), r.train_step, device, start_step);
  LOG_IF(INFO, lead) << "training: " << comm.world() << " rank(s) x " << ctx.threads << " thread(s), device "
                     << device << ", global batch " << t.batch_size() << " (split " << t.batch_split() << "), "
                     << t.num_steps() << " steps, dataset " << r.dataset->size() << " videos, comm " << comm.backend()
                     << " (" << r.reducer.num_buckets() << " gradient bucket(s), " << r.reducer.bytes() << " bytes)";

  const auto start = Clock::now();
  const double elapsed_before = state.elapsed_s;  // earlier runs of this training, from the checkpoint
  int64_t step = start_step;
  for (; step < t.num_steps(); ++step) {
    Faults().BeforeStep(step, comm.rank());
    Batch batch;
    if (!progress.NextBatch(&batch)) break;
    const StepResult result = RunStep(r, batch, step, t, comm);
    if (lead) metrics->Step(step + 1, result.loss, result.top1, result.top5, result.lr);
    const auto verdict = guard.Check(step + 1, result.loss, result.overflow, result.update_nonfinite, result.lr);
    if (verdict != DivergenceGuard::Verdict::kOk && lead) {
      metrics->Flush();
      LOG_IF(WARNING, verdict == DivergenceGuard::Verdict::kSkipped) << guard.message();
      LOG_IF(ERROR, verdict == DivergenceGuard::Verdict::kDiverged) << guard.message();
    }
    if (verdict == DivergenceGuard::Verdict::kDiverged) return kExitDiverged;
    progress.Record(step, result);

    const auto report = evaluation.MaybeRun(step + 1, result.stop);
    state.elapsed_s = elapsed_before + Since(start);  // what a snapshot of this step records
    if (report) checkpoints.MaybeSaveBest(*report, step + 1, &state, result.lr);
    // After the evaluation, so that a checkpoint of this step knows the best top-1 so far.
    const bool saved = checkpoints.MaybeSave(step + 1, state, result.lr, result.stop);
    if (result.stop) {
      // The other ranks wait here while rank 0 writes: the save's own deadline, not the stall timeout.
      const bool on_disk = comm.BroadcastString(saved ? "saved" : "failed", 0, "stop after checkpoint",
                                                config.dist().checkpoint_timeout_s()) == "saved";
      return on_disk ? kExitPreempted : kExitNotSaved;
    }
  }
  // Every rank learns whether the last state is on disk: a job whose final checkpoint failed must
  // not look finished (`evl submit --then-eval` would evaluate an older checkpoint as the model).
  const bool saved = comm.BroadcastString(checkpoints.Finish() ? "saved" : "failed", 0, "final checkpoint",
                                          config.dist().checkpoint_timeout_s()) == "saved";
  if (lead) {
    ExportFinalParameters(*r.model, t.run_dir());
    LogSummary(t, start_step, step, Since(start), elapsed_before, evaluation, state);
    LOG_IF(ERROR, !saved) << "the final state of this run is NOT on disk: exiting with status " << kExitNotSaved
                          << "; resume continues from the last checkpoint that was written";
  }
  return saved ? 0 : kExitNotSaved;
}

}  // namespace evl
