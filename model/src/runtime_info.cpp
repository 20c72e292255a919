#include "evl/runtime_info.h"

#include <link.h>
#include <torch/version.h>
#include <ATen/Parallel.h>
#include <ATen/Context.h>
#include <torch/cuda.h>
#ifdef EVL_TORCH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#endif

#include <sys/resource.h>

#include <climits>
#include <cstdlib>

namespace evl {

std::string TorchVersion() { return TORCH_VERSION; }

bool TorchBuiltWithCuda() {
#ifdef EVL_TORCH_CUDA
  return true;
#else
  return false;
#endif
}

bool TorchCudaAvailable() { return torch::cuda::is_available(); }

int TorchCudaDeviceCount() { return static_cast<int>(torch::cuda::device_count()); }

int TorchNumThreads() { return at::get_num_threads(); }

void SetTorchNumThreads(int n) {
  if (n > 0) at::set_num_threads(n);
}

std::string LoadedBlasLibrary() {
  // Debian selects the BLAS through alternatives; the path the loader resolved tells which one
  // (reference BLAS is ~20x slower than OpenBLAS, the first thing to check on a slow run).
  std::string found;
  dl_iterate_phdr(
      [](dl_phdr_info* info, size_t, void* data) {
        std::string name = info->dlpi_name ? info->dlpi_name : "";
        if (name.find("libblas") != std::string::npos || name.find("openblas") != std::string::npos ||
            name.find("mkl") != std::string::npos) {
          char real[PATH_MAX];
          auto* out = static_cast<std::string*>(data);
          if (out->empty()) *out = realpath(name.c_str(), real) ? real : name;
        }
        return 0;
      },
      &found);
  return found.empty() ? "unknown" : found;
}

double CudaPeakAllocatedBytes(int device) {
#ifdef EVL_TORCH_CUDA
  const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(device);
  return static_cast<double>(stats.allocated_bytes[0].peak);  // [0]: the aggregate over pool kinds
#else
  (void)device;
  return 0;
#endif
}

void ResetCudaPeakAllocated(int device) {
#ifdef EVL_TORCH_CUDA
  c10::cuda::CUDACachingAllocator::resetPeakStats(device);
#else
  (void)device;
#endif
}

double PeakResidentBytes() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_maxrss * 1024.0;  // Linux reports KiB
}

}  // namespace evl
