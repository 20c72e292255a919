// Where rank 0 records a run: RUN_DIR/metrics.jsonl (one JSON object per line, written by
// nlohmann::json: {"step", "loss", "top1", "top5", "lr"} per step, {"eval_step", "top1", "top5",
// "mean_class_top1", "videos", "skipped"} per evaluation) and TensorBoard scalars. Steps are
// counted as the console counts them: "step" N is the N-th step done (1-based), and an evaluation
// after N steps is at N, as is the checkpoint ckpt-N; TensorBoard uses the same numbers.
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
  // run that went further before it was stopped, are dropped so metrics.jsonl reads as one run.
  // TensorBoard keeps every event file, so the new one starts with a restart marker
  // (SessionLog START at resumed_at + 1) that makes TensorBoard hide the abandoned steps.
  MetricsLog(const std::string& run_dir, int64_t resumed_at);
  // What the console's progress line shows, over the steps since the last one.
  struct Window {
    double top1 = 0, top5 = 0, clips_per_s = 0;
    double data_wait = 0, comm_wait = 0;  // shares of the window's time
    double loss_scale = 0;                // 0: no loss scaler
    double grad_norm = 0;                 // of the last step's (all-reduced, unscaled) gradients
    double host_peak_mib = 0, gpu_peak_mib = 0;
  };
  void Step(int64_t step, double loss, double top1, double top5, double lr);
  void Progress(int64_t step, const Window& w);
  void Eval(int64_t step, const EvalReport& report);
  void Flush();

 private:
  std::ofstream jsonl_;
  std::unique_ptr<TensorBoardWriter> tb_;
};

}  // namespace evl
