#include "evl/nccl_info.h"

#ifdef EVL_HAVE_NCCL
#include <cuda_runtime_api.h>
#include <nccl.h>
#endif

#include <cstdio>

namespace evl {

int NcclVersionCode() {
#ifdef EVL_HAVE_NCCL
  int v = 0;
  return ncclGetVersion(&v) == ncclSuccess ? v : 0;
#else
  return 0;
#endif
}

std::string NcclVersionString(int code) {
  return std::to_string(code / 10000) + "." + std::to_string(code / 100 % 100) + "." + std::to_string(code % 100);
}

std::string NcclVersion() {
#ifdef EVL_HAVE_NCCL
  int v = 0;
  std::string runtime = "unavailable";
  if (ncclGetVersion(&v) == ncclSuccess) runtime = NcclVersionString(v);
  return runtime + " (built against " + std::to_string(NCCL_MAJOR) + "." +
         std::to_string(NCCL_MINOR) + "." + std::to_string(NCCL_PATCH) + ")";
#else
  return "not built";
#endif
}

std::string CudaDescription() {
#ifdef EVL_HAVE_NCCL
  auto version = [](int v) { return std::to_string(v / 1000) + "." + std::to_string((v % 1000) / 10); };
  int runtime = 0, driver = 0, count = 0;
  cudaRuntimeGetVersion(&runtime);
  cudaDriverGetVersion(&driver);
  std::string s = "runtime " + version(runtime) + ", driver supports " + (driver ? version(driver) : "none");
  if (cudaGetDeviceCount(&count) != cudaSuccess) count = 0;
  s += ", " + std::to_string(count) + " GPU(s) visible";
  for (int i = 0; i < count; ++i) {
    cudaDeviceProp p{};
    if (cudaGetDeviceProperties(&p, i) != cudaSuccess) continue;
    char line[256];
    std::snprintf(line, sizeof line, "\n           cuda:%d %s, %.1f GiB, sm_%d%d", i, p.name,
                  static_cast<double>(p.totalGlobalMem) / (1ULL << 30), p.major, p.minor);
    s += line;
  }
  return s;
#else
  return "not built (LibTorch without CUDA)";
#endif
}

}  // namespace evl
