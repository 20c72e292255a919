#include <google/protobuf/stubs/common.h>
#include <mpi.h>

#include <iostream>
#include <thread>

#include "commands.h"
#include "config.h"
#include "evl/ffmpeg_info.h"
#include "evl/model_factory.h"
#include "evl/nccl_info.h"
#include "evl/runtime_info.h"

namespace evl {

int RunInfo(bool with_model, const ConfigFlags& flags) {
  char mpi_lib[MPI_MAX_LIBRARY_VERSION_STRING];
  int len = 0;
  MPI_Get_library_version(mpi_lib, &len);
  std::string mpi(mpi_lib, len);
  if (auto nl = mpi.find_first_of("\r\n,"); nl != std::string::npos) mpi.resize(nl);

  std::cout << "evl        " << EVL_VERSION << "\n"
            << "commit     " << EVL_GIT_COMMIT << "\n"
            << "LibTorch   " << TorchVersion() << " (CUDA " << (TorchBuiltWithCuda() ? "built" : "not built") << ", "
            << (TorchCudaAvailable() ? "available" : "not available") << ")\n"
            << "CUDA       " << CudaDescription() << "\n"
            << "threads    " << TorchNumThreads() << " torch, " << std::thread::hardware_concurrency()
            << " cores visible\n"
            << "BLAS       " << LoadedBlasLibrary() << "\n"
            << "MPI        " << mpi << " (MPI " << MPI_VERSION << "." << MPI_SUBVERSION << " API)\n"
            << "NCCL       " << NcclVersion() << "\n"
            << "FFmpeg     " << FFmpegVersion() << "\n"
            << "protobuf   " << google::protobuf::internal::VersionString(GOOGLE_PROTOBUF_VERSION)
            << "\n";
  if (with_model) std::cout << ModelSummaryText(LoadEffectiveConfig(flags.config_path, flags.overrides));
  return 0;
}

}  // namespace evl
