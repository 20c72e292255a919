#include "run_setup.h"

#include <glog/logging.h>

#include <sstream>
#include <vector>

#include "config.h"
#include "evl/adamw.h"
#include "evl/checkpoint_manager.h"
#include "evl/file_util.h"
#include "evl/synth.h"
#include "evl/trainer.h"

namespace evl {
namespace {

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

}  // namespace

void CheckRanksAgree(const EvlConfig& config, torch::nn::Module& model, int64_t dataset_size, int64_t start_step,
                     Communicator& comm) {
  const std::string mine = Fingerprint(config, model, dataset_size) + "start step " + std::to_string(start_step) + "\n";
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

void CheckBatchDivides(const TrainConfig& t, int world) {
  if (t.batch_size() % (world * t.batch_split()))
    throw std::invalid_argument("train.batch_size " + std::to_string(t.batch_size()) + " must divide by world (" +
                                std::to_string(world) + ") x train.batch_split (" + std::to_string(t.batch_split()) +
                                ")");
}

Precision ResolvePrecision(const TrainConfig& t, const torch::Device& device) {
  Precision precision = t.precision();
  if (precision == AUTO) precision = device.is_cuda() ? FP16 : FP32;
  if (precision == FP16 && !device.is_cuda())
    throw std::invalid_argument("train.precision FP16 needs CUDA (CPU has no fp16 matmul); use BF16 or FP32");
  return precision;
}

std::unique_ptr<torch::optim::AdamW> MakeOptimizer(EVLTransformerImpl& model, const TrainConfig& t) {
  std::vector<torch::optim::OptimizerParamGroup> groups;
  auto options = [&](double decay) {
    return std::make_unique<torch::optim::AdamWOptions>(torch::optim::AdamWOptions(t.lr()).weight_decay(decay));
  };
  if (t.no_decay_norm_bias()) {
    std::vector<torch::Tensor> decay, no_decay;
    for (auto& p : model.named_parameters()) {
      const std::string& k = p.key();
      const bool exempt = p.value().dim() < 2 || k.find("norm") != std::string::npos ||
                          k.find("pos_embed") != std::string::npos || k.find("cls_token") != std::string::npos;
      (exempt ? no_decay : decay).push_back(p.value());
    }
    groups.emplace_back(decay, options(t.weight_decay()));
    groups.emplace_back(no_decay, options(0));
  } else {
    groups.emplace_back(model.parameters(), options(t.weight_decay()));
  }
  return std::make_unique<MultiTensorAdamW>(std::move(groups));
}

std::string ChooseResumeCheckpoint(const std::string& flag, bool restarted, const TrainConfig& t,
                                   Communicator& comm) {
  if (!restarted && (!flag.empty() || !t.auto_resume())) return flag;
  std::string chosen;
  if (comm.rank() == 0) {
    std::vector<std::string> skipped;
    chosen = FindNewestValidCheckpoint(t.run_dir(), &skipped);
    for (const auto& s : skipped) LOG(WARNING) << "auto-resume: skipping invalid checkpoint: " << s;
    if (restarted && !chosen.empty() && chosen != flag)
      LOG(INFO) << "restarted job: continuing from the run's newest checkpoint " << chosen
                << (flag.empty() ? "" : " (not --resume " + flag + ")")
                << (t.auto_resume() ? "" : " although train.auto_resume is false");
  }
  chosen = comm.BroadcastString(chosen, 0, "resume checkpoint");
  if (restarted && chosen.empty()) return flag;  // no checkpoint of this run yet
  return chosen;
}

void CheckResumeConfig(const std::string& saved_config_text, const EvlConfig& now, const std::string& path,
                       bool force, bool lead) {
  EvlConfig saved;
  try {
    saved = ParseConfigText(saved_config_text, path + " (saved config)");
  } catch (const ConfigError& e) {
    throw CheckpointError(e.what());
  }
  const auto diffs = ResumeConfigDifferences(saved, now);
  if (diffs.empty()) return;
  std::string list;
  for (const auto& d : diffs) list += "\n  " + d;
  if (!force)
    throw std::invalid_argument("refusing to resume " + path + ": the config differs in fields that change the math:" +
                                list + "\n(pass --force-resume to resume anyway)");
  if (lead) LOG(WARNING) << "resuming despite config differences (--force-resume):" << list;
}

void ResolveDataPaths(EvlConfig* config, Communicator& comm) {
  DataConfig* d = config->mutable_data();
  if (!d->train_list().empty() || !d->synthetic().enabled()) return;
  const std::string dir = config->train().run_dir() + "/cache/synthetic-data";
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

}  // namespace evl
