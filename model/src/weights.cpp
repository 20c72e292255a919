// Weight import (format detection, OpenAI CLIP TorchScript -> backbone, state-dict loading) and
// .pth export.
#include "evl/weights.h"

#include <torch/csrc/jit/serialization/pickle.h>
#include <torch/script.h>
#include <torch/torch.h>

#ifdef EVL_HAVE_LIBZIP
#include <zip.h>
#endif

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>

namespace evl {
namespace {

std::string Shape(const torch::Tensor& t) {
  std::ostringstream s;
  s << t.sizes();
  return s.str();
}

}  // namespace

const char* WeightsFormatName(WeightsFormat f) {
  switch (f) {
    case WeightsFormat::kTorchSave: return "torch.save archive (.pth)";
    case WeightsFormat::kTorchScript: return "TorchScript archive";
    case WeightsFormat::kEvlCheckpoint: return "evl checkpoint";
    default: return "unknown";
  }
}

WeightsFormat DetectWeightsFormat(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw WeightsError(path + ": cannot open");
  char magic[8] = {};
  in.read(magic, sizeof magic);
  if (in.gcount() >= 8 && std::string(magic, 8) == "EVLCKPT1") return WeightsFormat::kEvlCheckpoint;
  if (in.gcount() < 4 || std::string(magic, 4) != std::string("PK\x03\x04", 4)) return WeightsFormat::kUnknown;
#ifdef EVL_HAVE_LIBZIP
  int code = 0;
  zip_t* z = zip_open(path.c_str(), ZIP_RDONLY, &code);
  if (!z) return WeightsFormat::kUnknown;
  bool data_pkl = false, constants_pkl = false;
  for (zip_int64_t i = 0, n = zip_get_num_entries(z, 0); i < n; ++i) {
    std::string name = zip_get_name(z, i, 0) ? zip_get_name(z, i, 0) : "";
    auto ends = [&](const std::string& tail) {
      return name.size() >= tail.size() && name.compare(name.size() - tail.size(), tail.size(), tail) == 0;
    };
    data_pkl |= ends("/data.pkl");
    constants_pkl |= ends("/constants.pkl");
  }
  zip_discard(z);
  if (constants_pkl) return WeightsFormat::kTorchScript;
  if (data_pkl) return WeightsFormat::kTorchSave;
  return WeightsFormat::kUnknown;
#else
  return WeightsFormat::kTorchScript;  // without libzip only TorchScript zips are readable
#endif
}

std::string LoadReport::ToString() const {
  std::string s;
  auto list = [&](const char* what, const std::vector<std::string>& v) {
    if (v.empty()) return;
    s += std::string(s.empty() ? "" : "; ") + what + " (" + std::to_string(v.size()) + "): ";
    for (size_t i = 0; i < v.size() && i < 20; ++i) s += (i ? ", " : "") + v[i];
    if (v.size() > 20) s += ", ...";
  };
  list("missing keys", missing);
  list("unexpected keys", unexpected);
  return s.empty() ? "all keys matched" : s;
}

LoadReport LoadStateDict(torch::nn::Module& module, const StateDict& state, bool strict,
                         const std::string& source, bool skip_reshaped) {
  std::map<std::string, torch::Tensor> targets;
  for (auto& p : module.named_parameters(true)) targets[p.key()] = p.value();
  for (auto& b : module.named_buffers(true)) targets[b.key()] = b.value();
  LoadReport report;
  std::map<std::string, bool> seen;
  torch::NoGradGuard no_grad;
  for (const auto& [name, value] : state) {
    auto it = targets.find(name);
    if (it == targets.end()) {
      report.unexpected.push_back(name);
      continue;
    }
    if (!it->second.sizes().equals(value.sizes()) && skip_reshaped) {
      report.reshaped.push_back(name + " " + Shape(value) + " -> " + Shape(it->second));
      seen[name] = true;
      continue;
    }
    if (!it->second.sizes().equals(value.sizes()))
      throw WeightsError(source + ": tensor '" + name + "' has shape " + Shape(value) +
                         ", the model expects " + Shape(it->second));
    it->second.copy_(value);
    seen[name] = true;
  }
  for (const auto& [name, t] : targets)
    if (!seen.count(name)) report.missing.push_back(name);
  if (strict && (!report.missing.empty() || !report.unexpected.empty()))
    throw WeightsError(source + ": state dict does not match the model: " + report.ToString());
  return report;
}

void WriteTorchSaveStateDict(const std::string& path, const StateDict& state, int64_t next_step) {
  c10::Dict<std::string, torch::Tensor> model;
  for (const auto& [name, t] : state) model.insert(name, t.detach().to(torch::kCPU).contiguous());
  c10::impl::GenericDict top(c10::StringType::get(), c10::AnyType::get());
  top.insert("model", model);
  top.insert("next_step", next_step);
  // LibTorch's own torch.save-compatible writer: the zip layout and pickle protocol follow the
  // running LibTorch, which Python's torch.load of the same or a later version reads.
  const std::vector<char> bytes = torch::pickle_save(c10::IValue(top));
  const std::string tmp = path + ".tmp";
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) throw WeightsError(path + ": cannot create " + tmp + ": " + std::strerror(errno));
  const bool ok = std::fwrite(bytes.data(), 1, bytes.size(), f) == bytes.size();
  if (std::fclose(f) != 0 || !ok || std::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string why = std::strerror(errno);
    std::remove(tmp.c_str());
    throw WeightsError(path + ": write failed: " + why);
  }
}

void LoadClipVisual(VisionTransformer2DImpl& backbone, const std::string& path) {
  torch::jit::Module clip;
  try {
    clip = torch::jit::load(path, torch::kCPU);
  } catch (const c10::Error& e) {
    throw WeightsError(path + ": not a readable TorchScript archive (OpenAI CLIP .pt expected): " +
                       e.what_without_backtrace());
  }
  if (!clip.hasattr("visual")) throw WeightsError(path + ": TorchScript archive has no 'visual' module");
  std::map<std::string, torch::Tensor> src;
  for (const auto& p : clip.attr("visual").toModule().named_parameters(true)) src[p.name] = p.value.to(torch::kFloat);
  auto get = [&](const std::string& name) -> torch::Tensor {
    auto it = src.find(name);
    if (it == src.end()) throw WeightsError(path + ": missing tensor 'visual." + name + "'");
    return it->second;
  };
  StateDict dst;
  auto conv = get("conv1.weight");
  if (conv.dim() != 4) throw WeightsError(path + ": 'visual.conv1.weight' has shape " + Shape(conv) + ", expected 4-D");
  dst.emplace_back("cls_token", get("class_embedding"));
  dst.emplace_back("pos_embed", get("positional_embedding"));
  dst.emplace_back("patch_embed.proj.weight", conv.flatten(1));
  dst.emplace_back("patch_embed.proj.bias", torch::zeros({conv.size(0)}));
  dst.emplace_back("ln_pre.weight", get("ln_pre.weight"));
  dst.emplace_back("ln_pre.bias", get("ln_pre.bias"));
  int64_t blocks = 0;
  while (src.count("transformer.resblocks." + std::to_string(blocks) + ".ln_1.weight")) ++blocks;
  if (blocks != backbone.options().layers)
    throw WeightsError(path + ": has " + std::to_string(blocks) + " transformer blocks, the backbone has " +
                       std::to_string(backbone.options().layers) + " (wrong preset?)");
  for (int64_t i = 0; i < blocks; ++i) {
    const std::string s = "transformer.resblocks." + std::to_string(i) + ".";
    const std::string d = "blocks." + std::to_string(i) + ".";
    auto in_w = get(s + "attn.in_proj_weight"), in_b = get(s + "attn.in_proj_bias");
    const int64_t width = get(s + "ln_1.weight").size(0);
    if (in_w.dim() != 2 || in_w.size(0) != 3 * width || in_b.numel() != 3 * width)
      throw WeightsError(path + ": 'visual." + s + "attn.in_proj_weight' has shape " + Shape(in_w) +
                         ", expected [" + std::to_string(3 * width) + ", " + std::to_string(width) + "]");
    const char* qkv[] = {"q", "k", "v"};
    for (int j = 0; j < 3; ++j) {
      dst.emplace_back(d + "attn." + qkv[j] + "_proj.weight", in_w.narrow(0, j * width, width));
      dst.emplace_back(d + "attn." + qkv[j] + "_proj.bias", in_b.narrow(0, j * width, width));
    }
    const std::pair<const char*, const char*> renames[] = {{"attn.out_proj", "attn.out_proj"},
                                                           {"mlp.fc1", "mlp.c_fc"},
                                                           {"mlp.fc2", "mlp.c_proj"},
                                                           {"norm1", "ln_1"},
                                                           {"norm2", "ln_2"}};
    for (const auto& [to, from] : renames) {
      dst.emplace_back(d + to + ".weight", get(s + from + ".weight"));
      dst.emplace_back(d + to + ".bias", get(s + from + ".bias"));
    }
  }
  LoadStateDict(backbone, dst, /*strict=*/true, path);
}

LoadReport LoadEvlWeights(EVLTransformerImpl& model, const std::string& path, bool strict) {
  const WeightsFormat format = DetectWeightsFormat(path);
  switch (format) {
    case WeightsFormat::kTorchSave:
      return LoadStateDict(model, ReadTorchSaveStateDict(path), strict, path);
    case WeightsFormat::kEvlCheckpoint:
      throw WeightsError(path + ": evl protobuf checkpoints are read by the worker's checkpoint reader");
    case WeightsFormat::kTorchScript:
      throw WeightsError(path + ": is a TorchScript archive (a CLIP backbone? set model.backbone.weights), "
                                "expected an EVL checkpoint");
    default:
      throw WeightsError(path + ": unrecognised checkpoint format (neither a torch.save archive nor an evl checkpoint)");
  }
}

}  // namespace evl
