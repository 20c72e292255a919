#include "train_state.h"

#include "config.h"
#include "evl/checkpoint_manager.h"

#include <map>
#include <sstream>

namespace evl {
namespace {

// The optimizer's per-parameter state key: the TensorImpl address, as a string in LibTorch 1.x
// (what c10::guts::to_string printed) and as the pointer itself in later versions.
template <typename Key>
Key OptimKeyAs(const torch::Tensor& p) {
  if constexpr (std::is_same_v<Key, std::string>) {
    std::ostringstream s;
    s << p.unsafeGetTensorImpl();
    return s.str();
  } else {
    return p.unsafeGetTensorImpl();
  }
}
using OptimStateKey = std::decay_t<decltype(std::declval<torch::optim::AdamW&>().state())>::key_type;
OptimStateKey OptimKey(const torch::Tensor& p) { return OptimKeyAs<OptimStateKey>(p); }

}  // namespace

CheckpointState Snapshot(const TrainState& state, const EvlConfig& config, int64_t next_step, int world, double lr) {
  EVLTransformer& model = state.model;
  torch::optim::AdamW& opt = state.optimizer;
  const DynamicLossScaler* scaler = state.scaler;
  CheckpointState s;
  s.step = next_step;
  s.world_size = world;
  s.seed = config.train().seed();
  s.lr = lr;
  s.config_text = ConfigToText(config);
  const auto& bb = config.model().backbone();
  s.backbone_preset = bb.preset();
  s.backbone_weights = bb.weights();
  s.backbone_init_seed = bb.init_seed();
  if (!bb.weights().empty()) {
    static std::map<std::string, std::pair<uint64_t, uint32_t>> digests;  // the file does not change in a run
    if (!digests.count(bb.weights())) digests[bb.weights()] = FileDigest(bb.weights());
    std::tie(s.backbone_bytes, s.backbone_crc32c) = digests[bb.weights()];
  }
  torch::NoGradGuard ng;
  for (const auto& p : model->named_parameters()) {
    s.tensors.emplace_back("model/" + p.key(), p.value().detach().to(torch::kCPU).clone());
    auto it = opt.state().find(OptimKey(p.value()));
    if (it == opt.state().end()) continue;
    auto& st = static_cast<torch::optim::AdamWParamState&>(*it->second);
    s.tensors.emplace_back("optim/" + p.key() + "/exp_avg", st.exp_avg().to(torch::kCPU).clone());
    s.tensors.emplace_back("optim/" + p.key() + "/exp_avg_sq", st.exp_avg_sq().to(torch::kCPU).clone());
    s.tensors.emplace_back("optim/" + p.key() + "/step", torch::tensor({st.step()}, torch::kLong));
  }
  if (scaler) {
    s.tensors.emplace_back("scaler/scale", torch::tensor({scaler->scale()}, torch::kDouble));
    s.tensors.emplace_back("scaler/good_steps", torch::tensor({scaler->good_steps()}, torch::kLong));
  }
  s.tensors.emplace_back("train/elapsed_s", torch::tensor({state.elapsed_s}, torch::kDouble));
  if (state.best_top1 >= 0)
    s.tensors.emplace_back("eval/best_top1",
                           torch::tensor({state.best_top1, static_cast<double>(state.best_step)}, torch::kDouble));
  return s;
}

void Restore(const CheckpointState& s, TrainState* state, const std::string& path) {
  EVLTransformer& model = state->model;
  torch::optim::AdamW& opt = state->optimizer;
  DynamicLossScaler* scaler = state->scaler;
  std::map<std::string, torch::Tensor> t(s.tensors.begin(), s.tensors.end());
  const auto best = t.find("eval/best_top1");
  state->best_top1 = best != t.end() ? best->second[0].item<double>() : -1;
  state->best_step = best != t.end() && best->second.numel() > 1 ? best->second[1].item<int64_t>() : -1;
  const auto elapsed = t.find("train/elapsed_s");
  state->elapsed_s = elapsed != t.end() ? elapsed->second.item<double>() : 0;
  const auto scale = t.find("scaler/scale"), good = t.find("scaler/good_steps");
  if (scaler && scale != t.end() && good != t.end())
    scaler->Restore(scale->second.item<double>(), good->second.item<int64_t>());
  torch::NoGradGuard ng;
  for (const auto& p : model->named_parameters()) {
    auto it = t.find("model/" + p.key());
    if (it == t.end()) throw CheckpointError(path + ": has no tensor 'model/" + p.key() + "'");
    if (!it->second.sizes().equals(p.value().sizes()))
      throw CheckpointError(path + ": tensor 'model/" + p.key() + "' has another shape than the model's");
    p.value().copy_(it->second);
    auto avg = t.find("optim/" + p.key() + "/exp_avg"), sq = t.find("optim/" + p.key() + "/exp_avg_sq"),
         step = t.find("optim/" + p.key() + "/step");
    if (avg == t.end() || sq == t.end() || step == t.end()) continue;
    auto st = std::make_unique<torch::optim::AdamWParamState>();
    st->step(step->second.item<int64_t>());
    st->exp_avg(avg->second.to(p.value().device()).clone());
    st->exp_avg_sq(sq->second.to(p.value().device()).clone());
    opt.state()[OptimKey(p.value())] = std::move(st);
  }
}

}  // namespace evl
