// `evl ckpt inspect|verify PATH`.
#include <ATen/core/Tensor.h>

#include <iomanip>
#include <iostream>

#include "commands.h"
#include "evl/checkpoint.h"

namespace evl {

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

}  // namespace evl
