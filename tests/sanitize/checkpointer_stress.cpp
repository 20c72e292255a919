// Under ThreadSanitizer: the background checkpoint writer handed saves back to back while the
// training thread keeps changing its own tensors (the writer must own host copies), polled for
// errors, and destroyed with a save in flight. Then every checkpoint left must verify.
#include <torch/torch.h>

#include <cstdio>
#include <string>

#include "evl/checkpoint_manager.h"
#include "evl/fault_injection.h"

int main(int argc, char** argv) {
  const std::string run_dir = argc > 1 ? argv[1] : "tsan_ckpt";
  auto weights = torch::zeros({64, 64});
  for (int round = 0; round < 3; ++round) {
    evl::AsyncCheckpointer writer(run_dir, 2);
    for (int64_t step = 1; step <= 6; ++step) {
      evl::CheckpointState s;
      s.step = round * 100 + step;
      s.config_text = "step " + std::to_string(s.step);
      s.tensors.emplace_back("model/w", weights.clone());
      writer.Save(std::move(s));
      weights.add_(1.0);  // the training thread goes on while the writer writes
      if (step % 2 == 0 && !writer.Wait()) {
        std::fprintf(stderr, "checkpointer_stress: save failed: %s\n", writer.LastError().c_str());
        return 1;
      }
    }
  }  // destroyed right after a Save on odd rounds' last step: the destructor finishes it
  std::vector<std::string> skipped;
  const std::string newest = evl::FindNewestValidCheckpoint(run_dir, &skipped);
  if (newest != evl::CheckpointPath(run_dir, 206) || !skipped.empty()) {
    std::fprintf(stderr, "checkpointer_stress: newest valid %s, %zu invalid\n", newest.c_str(), skipped.size());
    return 1;
  }
  std::printf("checkpointer_stress: 18 saves over 3 writers, newest %s\n", newest.c_str());
  return 0;
}
