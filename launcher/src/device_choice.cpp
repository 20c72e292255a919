#include "evl/device_choice.h"

#include <cstdlib>
#include <set>
#include <stdexcept>

#include "evl/nccl_info.h"
#include "evl/runtime_info.h"

namespace evl {

namespace {

bool OwnGpuPerRank(const DeviceFacts& f) {
  const auto& sets = f.local_visible_devices;
  bool own = static_cast<int>(sets.size()) == f.local_world && f.local_world > 1;
  for (const auto& s : sets) own = own && s != kUnset && !s.empty();
  return own && std::set<std::string>(sets.begin(), sets.end()).size() == sets.size();
}

}  // namespace

bool RanksShareAGpu(const DeviceFacts& f) {
  return f.request != DeviceRequest::kCpu && f.visible_gpus > 0 && !OwnGpuPerRank(f) &&
         f.visible_gpus < f.local_world;
}

std::string ChooseDevice(const DeviceFacts& f) {
  if (f.request == DeviceRequest::kCpu) return "cpu";
  if (f.visible_gpus <= 0) {
    const std::string why = !f.torch_built_with_cuda ? "this evl's LibTorch was built without CUDA (see `evl info`)"
                                                     : "LibTorch sees no CUDA device (driver, CUDA_VISIBLE_DEVICES?)";
    if (f.request == DeviceRequest::kCuda) throw std::runtime_error("train.device CUDA, but " + why);
    if (!f.gpu_request.empty())
      throw std::runtime_error("GPUs were requested (" + f.gpu_request + "), but " + why +
                               "; set train.device: CPU to train on the CPU on purpose");
    return "cpu";
  }
  if (f.slurm_gpus_on_node >= 0 && f.slurm_gpus_on_node < f.local_world)
    throw std::runtime_error(std::to_string(f.local_world) + " tasks on the node but SLURM_GPUS_ON_NODE=" +
                             std::to_string(f.slurm_gpus_on_node) + ": ask for one GPU per task (--gpus-per-node)");
  const auto& sets = f.local_visible_devices;
  if (OwnGpuPerRank(f)) return "cuda:0";
  if (f.visible_gpus < f.local_world && f.shared_gpu_opt_in) {
    if (f.nccl_version < kNcclMultiRankPerGpuVersion)
      throw std::runtime_error(
          "EVL_ALLOW_SHARED_GPU=1 asks " + std::to_string(f.local_world) + " ranks to share " +
          std::to_string(f.visible_gpus) + " GPU(s), but " +
          (f.nccl_version == 0 ? std::string("this evl has no NCCL") : "NCCL " + NcclVersionString(f.nccl_version)) +
          " cannot run two ranks on one device (NCCL " + NcclVersionString(kNcclMultiRankPerGpuVersion) +
          " and later can): link a newer NCCL or start at most " + std::to_string(f.visible_gpus) + " ranks per node");
    return "cuda:" + std::to_string(f.local_rank % f.visible_gpus);
  }
  if (f.visible_gpus < f.local_world) {
    const std::string cvd = sets.empty() || f.local_rank >= static_cast<int>(sets.size()) ? kUnset : sets[f.local_rank];
    throw std::runtime_error(std::to_string(f.local_world) + " ranks on the node share " +
                             std::to_string(f.visible_gpus) + " visible GPU(s) (CUDA_VISIBLE_DEVICES=" + cvd +
                             "): NCCL needs one GPU per rank; start at most " + std::to_string(f.visible_gpus) +
                             " ranks per node, or bind one GPU to each task (EVL_ALLOW_SHARED_GPU=1 lets ranks "
                             "share one with NCCL >= " + NcclVersionString(kNcclMultiRankPerGpuVersion) + ", for checks)");
  }
  return "cuda:" + std::to_string(f.local_rank);
}

DeviceFacts ProcessDeviceFacts(DeviceRequest request) {
  DeviceFacts f;
  f.request = request;
  f.torch_built_with_cuda = TorchBuiltWithCuda();
  f.visible_gpus = TorchCudaAvailable() ? TorchCudaDeviceCount() : 0;
  f.gpu_request = GpuRequestFromEnv();
  const char* share = std::getenv("EVL_ALLOW_SHARED_GPU");
  f.shared_gpu_opt_in = share && std::string(share) == "1";
  f.nccl_version = NcclVersionCode();
  return f;
}

std::string GpuRequestFromEnv() {
  if (const char* v = std::getenv("SLURM_GPUS_ON_NODE"); v && std::atoi(v) > 0)
    return std::string("SLURM_GPUS_ON_NODE=") + v;
  for (const char* var : {"SLURM_JOB_GPUS", "SLURM_STEP_GPUS"}) {
    const char* v = std::getenv(var);
    if (v && *v) return std::string(var) + "=" + v;
  }
  const char* cvd = std::getenv("CUDA_VISIBLE_DEVICES");
  if (cvd && *cvd && std::string(cvd) != "-1" && std::string(cvd) != "NoDevFiles")
    return std::string("CUDA_VISIBLE_DEVICES=") + cvd;
  return "";
}

}  // namespace evl
