// Which device a rank computes on. One rule, decided once by the topology (evl/topology.h) and
// handed to the model, the trainer and the NCCL communicator; nothing else picks a GPU.
//
// - CPU requested: "cpu".
// - No usable CUDA: "cpu" under AUTO, unless the job asked for GPUs (Slurm's GPU variables,
//   or a CUDA_VISIBLE_DEVICES naming devices): then, like under CUDA,
//   a refusal that says why (LibTorch built without CUDA, or no device visible).
// - Each local rank sees its own GPUs (every rank's CUDA_VISIBLE_DEVICES set and all different,
//   as Slurm's per-task binding does): "cuda:0".
// - All local ranks see the same GPUs: "cuda:<local rank>", refused when there are fewer GPUs than
//   local ranks (NCCL before 2.30.3 cannot run two ranks on one device) unless the job opted in
//   with EVL_ALLOW_SHARED_GPU=1 and the NCCL linked is one that can: then "cuda:<local rank mod
//   GPUs>", and the rank sets NCCL_MULTI_RANK_GPU_ENABLE=1 (RanksShareAGpu). It is for checking
//   world-2 NCCL on a one-GPU machine, not for speed.
#pragma once

#include <string>
#include <vector>

namespace evl {

enum class DeviceRequest { kAuto, kCpu, kCuda };

struct DeviceFacts {
  DeviceRequest request = DeviceRequest::kAuto;
  bool torch_built_with_cuda = false;
  int visible_gpus = 0;  // what LibTorch sees (0 when it cannot use CUDA)
  int local_rank = 0, local_world = 1;
  // CUDA_VISIBLE_DEVICES of every local rank in local-rank order; nullptr-equivalent "unset" is
  // written as kUnset.
  std::vector<std::string> local_visible_devices;
  int slurm_gpus_on_node = -1;  // SLURM_GPUS_ON_NODE when srun started the ranks, else -1
  std::string gpu_request;      // why GPUs are expected ("SLURM_GPUS_ON_NODE=4"), "" when not
  bool shared_gpu_opt_in = false;  // EVL_ALLOW_SHARED_GPU=1
  int nccl_version = 0;            // NcclVersionCode() of the linked NCCL, 0 without one
};

inline constexpr const char* kUnset = "<unset>";

// Returns "cpu" or "cuda:K". Throws std::runtime_error naming the rule that refused.
std::string ChooseDevice(const DeviceFacts& facts);

// Whether the device ChooseDevice gives is shared with another local rank (allowed only by the
// opt-in above; the caller must then enable NCCL's multi-rank mode before NCCL starts).
bool RanksShareAGpu(const DeviceFacts& facts);

// The facts of this process (LibTorch's CUDA build and devices, GpuRequestFromEnv) for `request`,
// as one rank alone on its node; the topology adds the node's other ranks.
DeviceFacts ProcessDeviceFacts(DeviceRequest request);

// The reason, if any, that this process's environment says GPUs were requested: Slurm's
// SLURM_GPUS_ON_NODE/SLURM_JOB_GPUS/SLURM_STEP_GPUS (what `evl submit --gpus-per-node` leads to),
// or a CUDA_VISIBLE_DEVICES naming devices. "" when none does.
std::string GpuRequestFromEnv();

}  // namespace evl
