#include "evl/evaluator.h"

#include <glog/logging.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <fstream>
#include <iomanip>
#include <map>
#include <sstream>
#include <stdexcept>

#include "evl/checkpoint_manager.h"
#include "evl/dataset.h"
#include "evl/model_factory.h"
#include "evl/file_util.h"
#include "evl/npy.h"
#include "evl/ordered_prefetcher.h"
#include "evl/predict.h"
#include "evl/video_reader.h"
#include "evl/weights.h"
#include "utf8.h"

namespace evl {

at::Tensor AggregateViews(const at::Tensor& logits, Aggregation mode) {
  switch (mode) {
    case MEAN_LOGITS: return logits.mean(0);
    case MAX_SOFTMAX: return std::get<0>(logits.softmax(1).max(0));
    default: return logits.softmax(1).mean(0);  // the official aggregation
  }
}

LoadReport LoadTrainedWeights(EVLTransformerImpl& model, const std::string& path, bool skip_reshaped) {
  StateDict sd;
  const WeightsFormat format = DetectWeightsFormat(path);
  if (format != WeightsFormat::kEvlCheckpoint && format != WeightsFormat::kTorchSave)
    return LoadEvlWeights(model, path);  // throws, naming what the file is instead
  if (format == WeightsFormat::kTorchSave) {
    sd = ReadTorchSaveStateDict(path);
  } else {
    for (auto& [name, t] : ReadCheckpointFile(path).tensors)
      if (name.rfind("model/", 0) == 0) sd.emplace_back(name.substr(6), t);
  }
  return LoadStateDict(model, sd, /*strict=*/true, path, skip_reshaped);
}

namespace {

// One validation video as the decode threads hand it over.
struct EvalItem {
  at::Tensor views;   // [V, 3, T, S, S]; undefined when the video could not be used
  std::string error;  // why not
};

}  // namespace

EvalReport Evaluate(EVLTransformer& model, const EvlConfig& config, const std::vector<VideoEntry>& videos,
                    Communicator& comm, const torch::Device& device, const std::string& out_dir) {
  EvalReport r;
  if (videos.empty()) throw std::invalid_argument("data.val_list is empty: nothing to evaluate");
  const auto t0 = std::chrono::steady_clock::now();
  VideoClipDataset ds(DatasetOptionsFromConfig(config, false), videos);
  const int64_t n = ds.size(), C = config.model().num_classes(), world = comm.world();
  const int64_t slots = (n + world - 1) / world;
  // Row per local video: [index, decoded, scores...]; index -1 marks an unused slot.
  auto local = torch::full({slots, C + 2}, -1.0, torch::kDouble);
  // Why a video could not be used, for predictions.jsonl: gathered with the scores, as bytes.
  constexpr int64_t kReasonBytes = 1024;
  auto reasons = torch::zeros({slots, kReasonBytes}, torch::kUInt8);
  const bool was_training = model->is_training();
  model->eval();
  torch::NoGradGuard ng;
  const int64_t max_views = std::max(1, config.eval().batch_size());
  std::vector<std::pair<int64_t, torch::Tensor>> pending;  // (slot, views) waiting for a batched forward
  int64_t pending_views = 0, done = 0;
  auto flush = [&] {
    if (pending.empty()) return;
    std::vector<torch::Tensor> all;
    for (auto& p : pending) all.push_back(p.second);
    auto logits = model->forward(torch::cat(all).to(device)).to(torch::kCPU, torch::kDouble);
    int64_t off = 0;
    for (auto& [slot, views] : pending) {
      local[slot].narrow(0, 2, C).copy_(AggregateViews(logits.narrow(0, off, views.size(0)), config.eval().aggregation()));
      off += views.size(0);
    }
    pending.clear();
    pending_views = 0;
  };
  std::vector<int64_t> mine;
  for (int64_t i = comm.rank(); i < n; i += world) mine.push_back(i);
  // Decoded on the loader's threads, in list order, so batches (and the numbers) do not depend on
  // the thread count; a bad video is reported, anything else ends the evaluation naming the video.
  OrderedPrefetcher<EvalItem, VideoReader> prefetch(
      static_cast<int64_t>(mine.size()), config.data().num_workers(),
      std::max(1, config.data().prefetch_batches()) * max_views, [&](int64_t k, VideoReader& reader) {
        EvalItem item;
        try {
          item.views = ds.Load(mine[k], 0, reader);
        } catch (const DataError& e) {
          item.error = e.what();
        } catch (const std::exception& e) {
          throw std::runtime_error("eval: decoding video " + std::to_string(mine[k]) + " ('" + ds.entry(mine[k]).path +
                                   "') failed: " + e.what());
        }
        return item;
      });
  for (int64_t slot = 0; slot < static_cast<int64_t>(mine.size()); ++slot) {
    const int64_t i = mine[slot];
    local[slot][0] = static_cast<double>(i);
    EvalItem item;
    prefetch.Next(&item);
    if (item.views.defined()) {
      local[slot][1] = 1.0;
      pending_views += item.views.size(0);
      pending.emplace_back(slot, item.views);
      if (pending_views >= max_views) flush();
    } else {
      LOG(WARNING) << "eval: cannot use video " << i << " (counted as wrong in the over-all numbers): " << item.error;
      const std::string reason = TruncateUtf8(item.error, kReasonBytes - 1);
      std::memcpy(reasons[slot].data_ptr<uint8_t>(), reason.data(), reason.size());
      local[slot][1] = 0.0;
      local[slot].narrow(0, 2, C).zero_();
    }
    if (comm.rank() == 0 && ++done % 50 == 0) {
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      const double vps = done * world / s;
      LOG(INFO) << "eval: " << done * world << "/" << n << " videos, " << std::fixed << std::setprecision(1) << vps
                << " videos/s, eta " << static_cast<int>((n - done * world) / std::max(1e-9, vps)) << " s";
    }
  }
  flush();
  auto gathered = torch::zeros({world * slots, C + 2}, torch::kDouble);
  comm.AllGather(local, gathered, "eval results");
  auto all_reasons = torch::zeros({world * slots, kReasonBytes}, torch::kUInt8);
  comm.AllGather(reasons, all_reasons, "eval reasons");
  if (was_training) model->train();

  // Every rank computes the same metrics from the same gathered rows (rank 0 writes files).
  std::vector<int64_t> row_of(n, -1);
  for (int64_t k = 0; k < gathered.size(0); ++k) {
    const int64_t idx = static_cast<int64_t>(gathered[k][0].item<double>());
    if (idx >= 0) row_of.at(idx) = k;
  }
  int64_t c1 = 0, c5 = 0;
  std::vector<int64_t> class_total(C, 0), class_hit(C, 0);
  std::vector<int64_t> confusion(C * C, 0);
  std::vector<std::string> names;
  if (!config.data().class_map().empty()) names = LoadClassNames(config.data().class_map(), static_cast<int>(C));
  const bool write = comm.rank() == 0 && !out_dir.empty();
  std::string predictions;  // predictions.jsonl, written at the end with the other outputs
  torch::Tensor scores_out;  // [n, C] in list order
  if (write && config.eval().save_scores()) scores_out = torch::full({n, C}, std::nan(""), torch::kFloat);
  for (int64_t i = 0; i < n; ++i) {
    if (row_of[i] < 0) throw std::runtime_error("eval: video " + std::to_string(i) + " has no result (sharding bug)");
    auto row = gathered[row_of[i]];
    const bool decoded = row[1].item<double>() > 0.5;
    const int64_t label = ds.entry(i).label;
    ++class_total[label];
    const std::string& path = ds.entry(i).path;
    nlohmann::json j = {{"index", i}, {"path", path}, {"label", label}, {"decoded", decoded}};
    if (!IsValidUtf8(path)) j["path_hex"] = HexBytes(path);  // "path" shows U+FFFD for the bad bytes
    if (!names.empty()) j["label_name"] = names[label];
    if (decoded) {
      ++r.evaluated;
      auto scores = row.narrow(0, 2, C);
      auto top = scores.topk(std::min<int64_t>(5, C));
      auto values = std::get<0>(top), idx = std::get<1>(top);
      const int64_t best = idx[0].item<int64_t>();
      c1 += best == label;
      c5 += (idx == label).any().item<bool>();
      class_hit[label] += best == label;
      ++confusion[label * C + best];
      nlohmann::json t5 = nlohmann::json::array();
      for (int64_t k = 0; k < idx.size(0); ++k) t5.push_back({idx[k].item<int64_t>(), values[k].item<double>()});
      j["top5"] = t5;
      if (!names.empty()) {
        nlohmann::json n5 = nlohmann::json::array();
        for (int64_t k = 0; k < idx.size(0); ++k) n5.push_back(names[idx[k].item<int64_t>()]);
        j["top5_names"] = n5;
      }
      if (scores_out.defined()) scores_out[i].copy_(scores);
    } else {
      ++r.skipped;
      j["error"] = std::string(reinterpret_cast<const char*>(all_reasons[row_of[i]].data_ptr<uint8_t>()));
    }
    if (write) predictions += JsonText(j) + "\n";
  }
  r.videos = n;
  r.top1_all = 100.0 * c1 / n;
  r.top5_all = 100.0 * c5 / n;
  r.top1_decoded = r.evaluated ? 100.0 * c1 / r.evaluated : 0;
  r.top5_decoded = r.evaluated ? 100.0 * c5 / r.evaluated : 0;
  int present = 0;
  for (int64_t c = 0; c < C; ++c)
    if (class_total[c]) {
      r.mean_class_top1 += 100.0 * class_hit[c] / class_total[c];
      ++present;
    }
  if (present) r.mean_class_top1 /= present;
  const double total_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.videos_per_s = n / total_s;
  r.data_share = prefetch.wait_s() / total_s;
  if (comm.rank() == 0 && !out_dir.empty()) {
    nlohmann::json m = {{"videos", r.videos},           {"evaluated", r.evaluated},
                        {"skipped", r.skipped},         {"top1", r.top1_all},
                        {"top5", r.top5_all},           {"top1_decoded", r.top1_decoded},
                        {"top5_decoded", r.top5_decoded}, {"mean_class_top1", r.mean_class_top1},
                        {"views", config.data().num_temporal_views() * config.data().num_spatial_views()},
                        {"aggregation", Aggregation_Name(config.eval().aggregation())},
                        {"videos_per_s", r.videos_per_s},
                        {"data_wait_share", r.data_share}};
    // Atomically and checked (evl/file_util.h): a full disk is an error naming the file, not an
    // empty file and status 0.
    WriteFileAtomically(out_dir + "/predictions.jsonl", predictions);
    WriteFileAtomically(out_dir + "/metrics.json", JsonText(m, 2) + "\n");
    // Rows are true classes, columns predicted ones; with a class map, a header row and a first
    // column of names (quoted as CSV wants).
    std::ostringstream conf;
    auto quoted = [](const std::string& s) {
      std::string q = "\"";
      for (char ch : s) q += ch == '"' ? std::string("\"\"") : std::string(1, ch);
      return q + "\"";
    };
    if (!names.empty()) {
      conf << "true\\predicted";
      for (const auto& name : names) conf << "," << quoted(name);
      conf << "\n";
    }
    for (int64_t a = 0; a < C; ++a) {
      if (!names.empty()) conf << quoted(names[a]) << ",";
      for (int64_t b = 0; b < C; ++b) conf << (b ? "," : "") << confusion[a * C + b];
      conf << "\n";
    }
    WriteFileAtomically(out_dir + "/confusion.csv", conf.str());
    if (scores_out.defined()) WriteFileAtomically(out_dir + "/scores.npy", NpyBytes(scores_out));
  }
  return r;
}

}  // namespace evl
