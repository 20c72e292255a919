// `evl info` (versions, for bug reports) and `evl config` (the effective config).
#include <CLI/CLI.hpp>
#include <google/protobuf/stubs/common.h>
#include <mpi.h>

#include <iostream>
#include <sstream>
#include <thread>

#include "commands.h"
#include "config.h"
#include "evl/ffmpeg_info.h"
#include "evl/model_factory.h"
#include "evl/nccl_info.h"
#include "evl/runtime_info.h"

namespace evl {

std::string InfoText() {
  char mpi_lib[MPI_MAX_LIBRARY_VERSION_STRING];
  int len = 0;
  MPI_Get_library_version(mpi_lib, &len);
  std::string mpi(mpi_lib, len);
  if (auto nl = mpi.find_first_of("\r\n,"); nl != std::string::npos) mpi.resize(nl);

  std::ostringstream out;
  out << "evl        " << EVL_VERSION << "\n"
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
  return out.str();
}

namespace {

int RunInfo(bool with_model, const ConfigFlags& flags) {
  std::cout << InfoText();
  if (with_model) std::cout << ModelSummaryText(LoadEffectiveConfig(flags.config_path, flags.overrides));
  return 0;
}

}  // namespace

void AddInfoCommand(CLI::App& app, Invocation& inv) {
  auto* cmd = app.add_subcommand("info", "versions built with and running with (for bug reports)");
  auto flags = std::make_shared<ConfigFlags>();
  auto with_model = std::make_shared<bool>(false);
  cmd->add_flag("--model", *with_model, "also print the model summary (parameters, FLOPs)");
  AddConfigFlags(cmd, flags.get());
  OnChosen(cmd, inv, [flags, with_model] { return RunInfo(*with_model, *flags); });
}

void AddConfigCommand(CLI::App& app, Invocation& inv) {
  auto* cmd = app.add_subcommand("config", "validate a config and print the effective one");
  auto flags = std::make_shared<ConfigFlags>();
  auto check = std::make_shared<bool>(false);
  auto ranks = std::make_shared<int>(0);
  AddConfigFlags(cmd, flags.get());
  cmd->add_flag("--check", *check, "also run the preflight of a training job: paths, every list line, ranges");
  cmd->add_option("--ranks", *ranks, "with --check: the job's ranks (checks that the batch divides)");
  OnChosen(cmd, inv, [flags, check, ranks] {
    const EvlConfig config = LoadEffectiveConfig(flags->config_path, flags->overrides);
    if (*check) {
      if (!PassesPreflight(config, PreflightFor::kConfig, *ranks)) return 2;
      std::cerr << "preflight: no problem found\n";
    }
    std::cout << ConfigToText(config);
    return 0;
  });
}

}  // namespace evl
