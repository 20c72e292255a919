#include "evl/autocast.h"

#include <ATen/autocast_mode.h>
#include <torch/version.h>

#define EVL_AUTOCAST_PER_DEVICE_API (TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4))

namespace evl {

namespace {

bool Enabled(bool cuda) {
#if EVL_AUTOCAST_PER_DEVICE_API
  return at::autocast::is_autocast_enabled(cuda ? at::kCUDA : at::kCPU);
#else
  return cuda ? at::autocast::is_enabled() : at::autocast::is_cpu_enabled();
#endif
}

at::ScalarType Dtype(bool cuda) {
#if EVL_AUTOCAST_PER_DEVICE_API
  return at::autocast::get_autocast_dtype(cuda ? at::kCUDA : at::kCPU);
#else
  return cuda ? at::autocast::get_autocast_gpu_dtype() : at::autocast::get_autocast_cpu_dtype();
#endif
}

void Set(bool cuda, bool enabled, at::ScalarType type) {
#if EVL_AUTOCAST_PER_DEVICE_API
  const auto device = cuda ? at::kCUDA : at::kCPU;
  at::autocast::set_autocast_dtype(device, type);
  at::autocast::set_autocast_enabled(device, enabled);
#else
  if (cuda) {
    at::autocast::set_autocast_gpu_dtype(type);
    at::autocast::set_enabled(enabled);
  } else {
    at::autocast::set_autocast_cpu_dtype(type);
    at::autocast::set_cpu_enabled(enabled);
  }
#endif
}

}  // namespace

AutocastScope::AutocastScope(bool cuda, AutocastDtype dtype) : cuda_(cuda), on_(dtype != AutocastDtype::kOff) {
  if (!on_) return;
  was_enabled_ = Enabled(cuda_);
  previous_dtype_ = static_cast<int>(Dtype(cuda_));
  at::autocast::increment_nesting();
  Set(cuda_, true, dtype == AutocastDtype::kHalf ? at::kHalf : at::kBFloat16);
}

AutocastScope::~AutocastScope() {
  if (!on_) return;
  Set(cuda_, was_enabled_, static_cast<at::ScalarType>(previous_dtype_));
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
}

AutocastPause::AutocastPause(bool cuda) : cuda_(cuda), was_enabled_(Enabled(cuda)) {
  if (was_enabled_) Set(cuda_, false, Dtype(cuda_));
}

AutocastPause::~AutocastPause() {
  if (was_enabled_) Set(cuda_, true, Dtype(cuda_));
}

bool AutocastEnabled(bool cuda) { return Enabled(cuda); }
bool CpuAutocastEnabled() { return Enabled(false); }

}  // namespace evl
