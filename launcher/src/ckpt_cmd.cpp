// `evl ckpt inspect|verify|export PATH`.
#include <ATen/core/Tensor.h>
#include <CLI/CLI.hpp>

#include <iomanip>
#include <iostream>

#include "commands.h"
#include "evl/checkpoint_manager.h"
#include "evl/weights.h"

namespace evl {
namespace {

int RunCkpt(const std::string& action, const std::string& path) {
  CheckpointState s;
  try {
    s = ReadCheckpointFile(path);
  } catch (const CheckpointError& e) {
    std::cout << "INVALID: " << e.what() << "\n";
    return 1;
  }
  if (action == "inspect") {
    int64_t bytes = 0;
    std::cout << "checkpoint  " << path << "\nnext step   " << s.step << "\nsaved by    " << s.world_size
              << " rank(s)\nseed        " << s.seed << "\nlr          " << s.lr << "\nbackbone    " << s.backbone_preset
              << " " << (s.backbone_weights.empty() ? "(random, init_seed " + std::to_string(s.backbone_init_seed) + ")"
                                                     : s.backbone_weights)
              << " bytes " << s.backbone_bytes << " crc32c " << std::hex << s.backbone_crc32c << std::dec << "\ntensors\n";
    for (const auto& [name, t] : s.tensors) {
      std::cout << "  " << std::left << std::setw(60) << name << " " << t.sizes() << " " << t.dtype() << "\n";
      bytes += t.numel() * static_cast<int64_t>(t.element_size());
    }
    std::cout << s.tensors.size() << " tensors, " << bytes << " bytes\nconfig\n" << s.config_text;
  }
  std::cout << "OK: every tensor's crc32c verified\n";
  return 0;
}

int RunCkptExport(const std::string& path, const std::string& out) {
  const CheckpointState s = ReadCheckpointFile(path);  // verified: a corrupt checkpoint is not exported
  StateDict model;
  for (const auto& [name, t] : s.tensors)
    if (name.rfind("model/", 0) == 0) model.emplace_back(name.substr(6), t);
  std::string dest = out;
  if (dest.empty()) {
    const size_t dot = path.rfind('.'), slash = path.rfind('/');
    dest = (dot != std::string::npos && (slash == std::string::npos || dot > slash) ? path.substr(0, dot) : path) + ".pth";
  }
  WriteTorchSaveStateDict(dest, model, s.step);
  std::cout << "wrote " << dest << ": " << model.size() << " tensors of the trainable model (official key names), "
            << "next_step " << s.step << "; torch.load(...)['model'] loads into the official EVLTransformer "
            << "with strict=False (the frozen backbone is not included)\n";
  return 0;
}

struct CkptOptions {
  std::string path, out, format = "pth";
};

}  // namespace

void AddCkptCommands(CLI::App& app, Invocation& inv) {
  auto* ckpt = app.add_subcommand("ckpt", "checkpoints: inspect, verify, export");
  ckpt->require_subcommand(1);
  auto o = std::make_shared<CkptOptions>();
  for (const std::string action : {"inspect", "verify"}) {
    auto* sub = ckpt->add_subcommand(action, action == "inspect" ? "print the manifest, tensors and verification result"
                                                                 : "check every tensor's checksum; exit non-zero if any fails");
    sub->add_option("path", o->path, "checkpoint file")->required();
    OnChosen(sub, inv, [o, action] { return RunCkpt(action, o->path); });
  }
  auto* ckpt_export = ckpt->add_subcommand("export", "write a .pth that torch.load opens (official key names)");
  ckpt_export->add_option("path", o->path, "checkpoint file")->required();
  ckpt_export->add_option("--format", o->format, "output format")->check(CLI::IsMember({"pth"}));
  ckpt_export->add_option("--out", o->out, "output file (default: the checkpoint's name with .pth)");
  OnChosen(ckpt_export, inv, [o] { return RunCkptExport(o->path, o->out); });
}

}  // namespace evl
