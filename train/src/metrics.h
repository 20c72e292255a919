// Where rank 0 records a run: RUN_DIR/metrics.jsonl (one JSON object per line, written by
// nlohmann::json: {"step", "loss", "top1", "top5", "lr"} per step, {"eval_step", "top1", "top5",
// "videos", "skipped"} per evaluation) and TensorBoard scalars (train/loss, train/lr, train/top1,
// train/clips_per_s, eval/top1, eval/top5).
#pragma once

#include <cstdint>
#include <fstream>
#include <memory>
#include <string>

#include "evl/evaluator.h"
#include "evl/tensorboard.h"

namespace evl {

class MetricsLog {
 public:
  // `resumed_at`: the step training resumes at (0 for a new run); lines of later steps, left by a
  // run that went further before it was stopped, are dropped so the file reads as one run.
  MetricsLog(const std::string& run_dir, int64_t resumed_at);
  void Step(int64_t step, double loss, double top1, double top5, double lr);
  void Window(int64_t step, double top1, double clips_per_s);
  void Eval(int64_t step, const EvalReport& report);
  void Flush();

 private:
  std::ofstream jsonl_;
  std::unique_ptr<TensorBoardWriter> tb_;
};

}  // namespace evl
