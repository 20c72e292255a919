// Mixed-precision autocast for the model's forward pass. The LibTorch API for it changed in 2.4
// (per-device-type calls); this is the one place that knows both, for LibTorch 1.13 (Debian) and the
// GPU machines' 2.x. Cheap header: no LibTorch includes.
#pragma once

namespace evl {

// kOff makes the scope do nothing, so a caller whose precision is FP32 needs no branch.
enum class AutocastDtype { kOff, kHalf, kBFloat16 };

// Turns autocast on for CUDA or CPU ops until destroyed, then restores what was there before
// (enabled or not, and the dtype), so scopes nest as torch.autocast's do. The weight-cast cache is
// cleared when the outermost scope exits, because the weights change every step.
class AutocastScope {
 public:
  AutocastScope(bool cuda, AutocastDtype dtype);
  ~AutocastScope();
  AutocastScope(const AutocastScope&) = delete;
  AutocastScope& operator=(const AutocastScope&) = delete;

 private:
  bool cuda_, on_;
  bool was_enabled_ = false;
  int previous_dtype_ = 0;  // at::ScalarType, kept as int so this header stays LibTorch-free
};

// Turns autocast off for CUDA or CPU ops until destroyed, then restores it: for code that already
// runs in the precision it wants (the frozen backbone's weights are stored in it), where autocast
// would only add its dispatch and cast-cache lookups and send LayerNorm/softmax through FP32 copies.
class AutocastPause {
 public:
  explicit AutocastPause(bool cuda);
  ~AutocastPause();
  AutocastPause(const AutocastPause&) = delete;
  AutocastPause& operator=(const AutocastPause&) = delete;

 private:
  bool cuda_, was_enabled_;
};

bool AutocastEnabled(bool cuda);
bool CpuAutocastEnabled();

}  // namespace evl
