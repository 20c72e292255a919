// `evl train`: one rank of a training job (or a 1-rank job without mpirun).
#include <CLI/CLI.hpp>
#include <glog/logging.h>

#include <csignal>

#include "commands.h"
#include "config.h"
#include "evl/logging.h"
#include "run_record.h"

#include "evl/communicator.h"
#include "evl/runtime_info.h"
#include "evl/slurm.h"
#include "evl/stop_signal.h"
#include "evl/subprocess.h"
#include "evl/topology.h"
#include "evl/trainer.h"

namespace evl {
namespace {

// Rank 0 asks Slurm to requeue the job once every rank is past its checkpoint; the requeued job
// auto-resumes from it. The broadcast keeps the other ranks alive until the request is made, so
// srun --kill-on-bad-exit cannot take rank 0 down before it.
void RequeueIfSlurm(const EvlConfig& config, Communicator& comm, int rank) {
  const SlurmJobInfo job = SlurmJobFromEnv();
  if (rank == 0 && job.in_job) {
    const std::string refusal = RequeueRefusal(job, config.slurm().max_requeues());
    if (!refusal.empty()) {
      LOG(ERROR) << "not requeueing Slurm job " << job.job_id << ": " << refusal
                 << "; resubmit to continue from the checkpoint";
    } else {
      std::string out;
      const int rc = RunCaptured({"scontrol", "requeue", job.job_id}, &out);
      // Both are the requeue having worked: Slurm SIGTERMs the job's processes, scontrol among
      // them (143), or an outside `scontrol requeue` came first and the job is already pending.
      if (RequeueSucceeded(rc, out))
        LOG(WARNING) << "requeued Slurm job " << job.job_id << " (restart " << job.restart_count + 1
                     << "); it resumes from the checkpoint";
      else
        LOG(ERROR) << "scontrol requeue " << job.job_id << " failed (status " << rc << "): " << out;
    }
  }
  if (job.in_job) comm.BroadcastString("", 0, "slurm requeue");
}

}  // namespace

DeviceRequest DeviceRequestOf(const EvlConfig& config) {
  switch (config.train().device()) {
    case TrainConfig::CPU: return DeviceRequest::kCpu;
    case TrainConfig::CUDA: return DeviceRequest::kCuda;
    default: return DeviceRequest::kAuto;
  }
}

std::string SingleProcessDevice(const EvlConfig& config) { return ChooseDevice(ProcessDeviceFacts(DeviceRequestOf(config))); }

namespace {

// Host tensors always travel over MPI; device tensors over NCCL. dist.backend MPI on a GPU is
// refused rather than staged through the host: it would silently cost a copy per bucket.
std::unique_ptr<Communicator> MakeJobCommunicator(const EvlConfig& config, const Topology& topo) {
  const double timeout = config.dist().stall_timeout_s();
  const bool cuda = topo.device.rfind("cuda", 0) == 0;
  const auto backend = config.dist().backend();
  if (!cuda && backend == COMM_NCCL)
    throw std::invalid_argument("dist.backend NCCL needs a CUDA device, and this rank computes on " + topo.device);
  if (cuda && backend == COMM_MPI)
    throw std::invalid_argument("dist.backend MPI cannot carry the CUDA gradients of " + topo.device +
                                "; use AUTO (NCCL for CUDA tensors, MPI for host tensors)");
  std::unique_ptr<Communicator> accelerator;
  if (cuda) accelerator = MakeNcclCommunicator(timeout, std::stoi(topo.device.substr(5)));
  return MakeRoutingCommunicator(MakeMpiCommunicator(timeout), std::move(accelerator));
}

int RunTrain(int* argc, char*** argv, const ConfigFlags& flags, const TrainFlags& train_flags, int preflight_ranks) {
  std::string command;
  for (int i = 0; i < *argc; ++i) command += (i ? " " : "") + std::string((*argv)[i]);
  // Config errors surface before MPI starts, on every rank, with the file and field.
  EvlConfig config = LoadEffectiveConfig(flags.config_path, flags.overrides);
  // Before MPI starts: every rank checks (shared files), rank 0 alone speaks.
  if (!PassesRankPreflight(config, PreflightFor::kTrain, preflight_ranks)) return 2;
  if (preflight_ranks > 0) return 0;
  return RunRankJob(argc, argv, config.train().threads(), DeviceRequestOf(config), [&](const Topology& topo) {
    LOG_IF(INFO, topo.rank == 0) << "job: " << topo.world << " rank(s), " << topo.local_world << " on this node ("
                                 << topo.host << "), " << topo.threads << " thread(s) per rank";
    const SlurmJobInfo job = SlurmJobFromEnv();
    LOG_IF(INFO, topo.rank == 0 && job.in_job) << "Slurm job " << job.job_id << ", SLURM_RESTART_COUNT "
                                               << job.restart_count << " (max " << config.slurm().max_requeues() << ")";
    const std::unique_ptr<Communicator> comm = MakeJobCommunicator(config, topo);
    const RunRecord record(config, topo, command, InfoText(), *comm);
    if (!record.refusal().empty()) {
      LOG_IF(ERROR, topo.rank == 0) << record.refusal();
      return 2;
    }
    RankContext ctx{topo.rank, topo.world, topo.local_rank, topo.local_world, topo.threads, topo.device};
    TrainFlags flags = train_flags;
    flags.restarted = job.in_job && job.restart_count > 0;
    const int status = RunTraining(config, *comm, ctx, flags);
    if (RequeueAfterStop(status)) RequeueIfSlurm(config, *comm, topo.rank);
    return status;
  });
}

}  // namespace

void AddTrainCommand(CLI::App& app, Invocation& inv) {
  auto* cmd = app.add_subcommand("train", "train the EVL decoder (under mpirun/srun or alone)");
  auto flags = std::make_shared<ConfigFlags>();
  auto train = std::make_shared<TrainFlags>();
  auto preflight_ranks = std::make_shared<int>(0);
  AddConfigFlags(cmd, flags.get());
  AddPreflightRanksOption(cmd, preflight_ranks.get());
  cmd->add_option("--resume", train->resume, "resume from this checkpoint (wins over train.auto_resume)");
  cmd->add_option("--init-from", train->init_from, "initialise the decoder from an official .pth");
  cmd->add_flag("--force-resume", train->force_resume, "resume even if math-relevant config fields differ");
  OnChosen(cmd, inv, [&inv, flags, train, preflight_ranks] {
    return RunTrain(inv.argc, inv.argv, *flags, *train, *preflight_ranks);
  });
}

}  // namespace evl
