#include "periodic_evaluation.h"

#include <glog/logging.h>

#include <iomanip>

#include "evl/fault_injection.h"
#include "evl/file_util.h"
#include "metrics.h"

namespace evl {

PeriodicEvaluation::PeriodicEvaluation(EVLTransformer& model, const EvlConfig& config,
                                       const std::vector<VideoEntry>& videos, Communicator& comm,
                                       const torch::Device& device, MetricsLog* metrics)
    : model_(model), config_(config), videos_(videos), comm_(comm), device_(device), metrics_(metrics) {}

bool PeriodicEvaluation::Due(int64_t step, bool stop) const {
  const TrainConfig& t = config_.train();
  return !stop && !videos_.empty() &&
         ((t.eval_freq() > 0 && step % t.eval_freq() == 0) || step == t.num_steps());
}

std::optional<EvalReport> PeriodicEvaluation::MaybeRun(int64_t step, bool stop) {
  if (!Due(step, stop)) return std::nullopt;
  Faults().At(FaultPoint::kEval);
  const std::string out_dir = config_.train().run_dir() + "/eval";
  const bool lead = comm_.rank() == 0;
  if (lead) MakeDirectories(out_dir);
  const EvalReport report = Evaluate(model_, config_, videos_, comm_, device_, out_dir);
  last_top1_ = report.top1_all;
  last_step_ = step;
  if (lead) {
    LOG(INFO) << "eval at step " << step << ": top1 " << std::fixed << std::setprecision(2) << report.top1_all
              << "  top5 " << report.top5_all << " over all " << report.videos << " videos (" << report.skipped
              << " undecodable; over decoded: top1 " << report.top1_decoded << ")";
    metrics_->Eval(step, report);
    metrics_->Flush();
  }
  return report;
}

}  // namespace evl
