#include "progress.h"

#include <glog/logging.h>

#include <algorithm>
#include <iomanip>

#include "evl/loss_scaler.h"
#include "evl/runtime_info.h"
#include "evl/schedule.h"
#include "evl/train_step.h"
#include "metrics.h"

namespace evl {
namespace {

double Since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

}  // namespace

Progress::Progress(const TrainConfig& train, Communicator& comm, Loader& loader, MetricsLog* metrics,
                   const DynamicLossScaler* scaler, const TrainStep& train_step, const torch::Device& device,
                   int64_t start_step)
    : train_(train),
      comm_(comm),
      loader_(loader),
      metrics_(metrics),
      scaler_(scaler),
      train_step_(train_step),
      device_(device),
      start_step_(start_step),
      room_wait_seen_(loader.counters().room_wait_s),
      decode_threads_(std::max(1, loader.counters().workers)) {}

bool Progress::NextBatch(Batch* batch) {
  const double waited = loader_.counters().wait_s;
  if (!loader_.Next(batch)) return false;
  const LoaderCounters after = loader_.counters();
  data_wait_s_ += after.wait_s - waited;
  // Decode threads wait for room while the training thread computes: counted from the last reading.
  decoders_idle_s_ += (after.room_wait_s - room_wait_seen_) / decode_threads_;
  room_wait_seen_ = after.room_wait_s;
  return true;
}

void Progress::Record(int64_t step, const StepResult& result) {
  clips_ += result.clips;
  comm_wait_s_ += result.comm_wait_s;
  if ((step + 1) % std::max(1, train_.print_freq()) == 0 || step + 1 == train_.num_steps()) Report(step, result);
}

void Progress::Report(int64_t step, const StepResult& r) {
  // Summed over ranks: a file that fails on two ranks counts twice.
  const LoaderCounters counters = loader_.counters();
  const auto skipped = torch::tensor({counters.skipped, counters.skipped_files}, torch::kLong);
  comm_.AllReduce(skipped, ReduceOp::kSum, "skipped videos");
  if (comm_.rank() == 0) {
    const double span = std::max(1e-9, Since(window_start_)), cps = clips_ / span;
    const double eta_s = RemainingSeconds(Since(run_start_), start_step_, step + 1, train_.num_steps());
    LOG(INFO) << "step " << step + 1 << "/" << train_.num_steps() << std::fixed << std::setprecision(4) << "  loss "
              << r.loss << std::setprecision(1) << "  top1 " << r.top1 << "  top5 " << r.top5 << std::scientific
              << std::setprecision(2) << "  lr " << r.lr << std::fixed << std::setprecision(1) << "  clips/s " << cps
              << " (" << cps / comm_.world() << "/rank)  data-wait " << 100 * data_wait_s_ / span
              << "% (decoders idle, queue full: " << 100 * decoders_idle_s_ / span << "%)  comm-wait "
              << 100 * comm_wait_s_ / span << "%  eta " << Hms(eta_s) << "  skipped " << skipped[0].item<int64_t>()
              << " attempt(s), " << skipped[1].item<int64_t>() << " file(s)";
    MetricsLog::Window w;
    w.top1 = r.top1;
    w.top5 = r.top5;
    w.clips_per_s = cps;
    w.data_wait = data_wait_s_ / span;
    w.comm_wait = comm_wait_s_ / span;
    w.loss_scale = scaler_ ? scaler_->scale() : 0;
    w.grad_norm = train_step_.GradNorm();
    w.host_peak_mib = PeakResidentBytes() / (1 << 20);
    if (device_.is_cuda()) w.gpu_peak_mib = CudaPeakAllocatedBytes(device_.index()) / (1 << 20);
    metrics_->Progress(step + 1, w);
    metrics_->Flush();
  }
  window_start_ = Clock::now();
  data_wait_s_ = comm_wait_s_ = decoders_idle_s_ = 0;
  clips_ = 0;
}

}  // namespace evl
