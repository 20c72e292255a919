// Whether the NCCL communicator was built, and which NCCL it links.
#pragma once

#include <string>

namespace evl {

// "2.x.y (built against 2.a.b)" or "not built".
std::string NcclVersion();

// The NCCL library's own version as NCCL_VERSION_CODE numbers it (2.30.3 is 23003), read from the
// library at run time (ncclGetVersion), not from the header built against; 0 when not built.
int NcclVersionCode();
// "major.minor.patch" of a version code as NcclVersionCode gives it.
std::string NcclVersionString(int code);

// The first NCCL that runs several ranks on one GPU, when NCCL_MULTI_RANK_GPU_ENABLE=1 asks it to
// (NCCL's src/init.cc: absent in v2.29.7-1, present from v2.30.3-1). Earlier ones refuse at init
// with "Duplicate GPU detected".
inline constexpr int kNcclMultiRankPerGpuVersion = 23003;

// Whether this build has the NCCL backend (NCCL and a CUDA LibTorch were found).
bool NcclBuilt();

// For `evl info`: the CUDA runtime and driver versions and every visible GPU (name, memory,
// compute capability), one per line; "not built (LibTorch without CUDA)" otherwise.
std::string CudaDescription();

}  // namespace evl
