// Whether the NCCL communicator was built, and which NCCL it links.
#pragma once

#include <string>

namespace evl {

// "2.x.y (built against 2.a.b)" or "not built".
std::string NcclVersion();

// Whether this build has the NCCL backend (NCCL and a CUDA LibTorch were found).
bool NcclBuilt();

// For `evl info`: the CUDA runtime and driver versions and every visible GPU (name, memory,
// compute capability), one per line; "not built (LibTorch without CUDA)" otherwise.
std::string CudaDescription();

}  // namespace evl
