#include "metrics.h"

#include <nlohmann/json.hpp>

#include <sstream>
#include <vector>

#include "evl/file_util.h"
#include "utf8.h"

namespace evl {
namespace {

// Keeps the lines of steps and evaluations up to `step`.
void TruncateAfter(const std::string& path, int64_t step) {
  std::ifstream in(path);
  if (!in) return;
  std::ostringstream kept;
  std::string line;
  while (std::getline(in, line)) {
    const auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) continue;  // a line cut off by a kill
    if (j.contains("step") && j["step"].get<int64_t>() > step) continue;
    if (j.contains("eval_step") && j["eval_step"].get<int64_t>() > step) continue;
    kept << line << "\n";
  }
  WriteFileAtomically(path, kept.str());
}

}  // namespace

MetricsLog::MetricsLog(const std::string& run_dir, int64_t resumed_at) {
  const std::string path = run_dir + "/metrics.jsonl";
  if (resumed_at > 0) TruncateAfter(path, resumed_at);
  jsonl_.open(path, resumed_at > 0 ? std::ios::app : std::ios::trunc);
  if (!jsonl_) throw std::runtime_error(path + ": cannot open for writing");
  tb_ = std::make_unique<TensorBoardWriter>(run_dir);
  // The first step this start logs is resumed_at + 1: anything an earlier start logged from there
  // on belongs to an abandoned continuation (or an earlier run from scratch).
  tb_->AddSessionStart(resumed_at + 1);
}

void MetricsLog::Step(int64_t step, double loss, double top1, double top5, double lr) {
  nlohmann::ordered_json j;
  j["step"] = step;
  j["loss"] = loss;
  j["top1"] = top1;
  j["top5"] = top5;
  j["lr"] = lr;
  jsonl_ << JsonText(j) << "\n";
  tb_->AddScalar("train/loss", static_cast<float>(loss), step);
  tb_->AddScalar("train/lr", static_cast<float>(lr), step);
}

void MetricsLog::Progress(int64_t step, const Window& w) {
  tb_->AddScalar("train/top1", static_cast<float>(w.top1), step);
  tb_->AddScalar("train/top5", static_cast<float>(w.top5), step);
  tb_->AddScalar("train/clips_per_s", static_cast<float>(w.clips_per_s), step);
  tb_->AddScalar("train/data_wait", static_cast<float>(w.data_wait), step);
  tb_->AddScalar("train/comm_wait", static_cast<float>(w.comm_wait), step);
  if (w.loss_scale > 0) tb_->AddScalar("train/loss_scale", static_cast<float>(w.loss_scale), step);
  tb_->AddScalar("train/grad_norm", static_cast<float>(w.grad_norm), step);
  tb_->AddScalar("memory/host_peak_mib", static_cast<float>(w.host_peak_mib), step);
  if (w.gpu_peak_mib > 0) tb_->AddScalar("memory/gpu_peak_mib", static_cast<float>(w.gpu_peak_mib), step);
}

void MetricsLog::Eval(int64_t step, const EvalReport& r) {
  nlohmann::ordered_json j;
  j["eval_step"] = step;
  j["top1"] = r.top1_all;
  j["top5"] = r.top5_all;
  j["mean_class_top1"] = r.mean_class_top1;
  j["videos"] = r.videos;
  j["skipped"] = r.skipped;
  jsonl_ << JsonText(j) << "\n";
  tb_->AddScalar("eval/top1", static_cast<float>(r.top1_all), step);
  tb_->AddScalar("eval/top5", static_cast<float>(r.top5_all), step);
  tb_->AddScalar("eval/mean_class_top1", static_cast<float>(r.mean_class_top1), step);
}

void MetricsLog::Flush() {
  jsonl_.flush();
  tb_->Flush();
}

}  // namespace evl
