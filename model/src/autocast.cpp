#include "evl/autocast.h"

#include <ATen/autocast_mode.h>
#include <torch/version.h>

#define EVL_AUTOCAST_PER_DEVICE_API (TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4))

namespace evl {

AutocastScope::AutocastScope(bool cuda, AutocastDtype dtype) : cuda_(cuda), on_(dtype != AutocastDtype::kOff) {
  if (!on_) return;
  const auto type = dtype == AutocastDtype::kHalf ? at::kHalf : at::kBFloat16;
#if EVL_AUTOCAST_PER_DEVICE_API
  const auto device = cuda_ ? at::kCUDA : at::kCPU;
  at::autocast::set_autocast_dtype(device, type);
  at::autocast::set_autocast_enabled(device, true);
#else
  if (cuda_) {
    at::autocast::set_autocast_gpu_dtype(type);
    at::autocast::set_enabled(true);
  } else {
    at::autocast::set_autocast_cpu_dtype(type);
    at::autocast::set_cpu_enabled(true);
  }
#endif
}

AutocastScope::~AutocastScope() {
  if (!on_) return;
#if EVL_AUTOCAST_PER_DEVICE_API
  at::autocast::set_autocast_enabled(cuda_ ? at::kCUDA : at::kCPU, false);
#else
  if (cuda_) at::autocast::set_enabled(false);
  else at::autocast::set_cpu_enabled(false);
#endif
  at::autocast::clear_cache();
}

bool CpuAutocastEnabled() {
#if EVL_AUTOCAST_PER_DEVICE_API
  return at::autocast::is_autocast_enabled(at::kCPU);
#else
  return at::autocast::is_cpu_enabled();
#endif
}

}  // namespace evl
