#include "evl/nccl_info.h"

#ifdef EVL_HAVE_NCCL
#include <nccl.h>
#endif

namespace evl {

std::string NcclVersion() {
#ifdef EVL_HAVE_NCCL
  int v = 0;
  std::string runtime = "unavailable";
  if (ncclGetVersion(&v) == ncclSuccess) {
    runtime = std::to_string(v / 10000) + "." + std::to_string((v % 10000) / 100) + "." +
              std::to_string(v % 100);
  }
  return runtime + " (built against " + std::to_string(NCCL_MAJOR) + "." +
         std::to_string(NCCL_MINOR) + "." + std::to_string(NCCL_PATCH) + ")";
#else
  return "not built";
#endif
}

}  // namespace evl
