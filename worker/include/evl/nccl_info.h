// Whether the NCCL communicator was built, and which NCCL it links.
#pragma once

#include <string>

namespace evl {

// "2.x.y (built against 2.a.b)" or "not built".
std::string NcclVersion();

}  // namespace evl
