// Distributed multi-view evaluation: every video of the list is scored exactly once (videos
// sharded across ranks without padding or duplicates), per-video scores are aggregated over its
// T x S views and gathered to rank 0 by video index, and undecodable videos are reported and kept
// in the denominator of the "over all" numbers.
#pragma once

#include <string>
#include <vector>

#include "evl/communicator.h"
#include "evl/model.h"
#include "evl/video_list.h"
#include "evl_config.pb.h"

namespace evl {

struct LoadReport;  // evl/weights.h

struct EvalReport {
  int64_t videos = 0, evaluated = 0, skipped = 0;
  double top1_all = 0, top5_all = 0;          // over every video in the list (undecodable = wrong)
  double top1_decoded = 0, top5_decoded = 0;  // over decoded videos
  double mean_class_top1 = 0;                 // mean over classes present in the list (over all)
  double videos_per_s = 0;
  double data_share = 0;  // rank 0's share of evaluation time the model waited for decoded videos
};

// Aggregates per-view logits [V, C] into one score vector [C] (eval.aggregation).
at::Tensor AggregateViews(const at::Tensor& view_logits, Aggregation mode);

// Evaluates `videos` (data.val_list as evl/dataset_lists.h read it, the same on every rank) with
// the config's views. When `out_dir` is non-empty rank 0 writes predictions.jsonl, metrics.json and
// confusion.csv there. Restores the model's training mode afterwards.
EvalReport Evaluate(EVLTransformer& model, const EvlConfig& config, const std::vector<VideoEntry>& videos,
                    Communicator& comm, const torch::Device& device, const std::string& out_dir);

// Loads trained decoder/head weights from an official .pth or an evl checkpoint (detected from
// the content), strictly.
// With `skip_reshaped`, tensors whose shapes differ (a head for another class count) are left as
// initialised and listed in the report; otherwise they are an error.
LoadReport LoadTrainedWeights(EVLTransformerImpl& model, const std::string& path, bool skip_reshaped = false);

}  // namespace evl
