// `evl train`: one rank of a training job (or a 1-rank job without mpirun).
#include <glog/logging.h>

#include "commands.h"
#include "config.h"

#include "evl/communicator.h"
#include "evl/runtime_info.h"
#include "evl/slurm.h"
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
      if (rc == 0)
        LOG(WARNING) << "requeued Slurm job " << job.job_id << " (restart " << job.restart_count + 1
                     << "); it resumes from the checkpoint";
      else
        LOG(ERROR) << "scontrol requeue " << job.job_id << " failed (status " << rc << "): " << out;
    }
  }
  if (job.in_job) comm.BroadcastString("", 0, "slurm requeue");
}

}  // namespace

int RunTrain(int* argc, char*** argv, const ConfigFlags& flags, const TrainFlags& train_flags) {
  // First: a stop signal that arrives while the job starts up must not kill it (Slurm may send
  // its warning signal at any time).
  InstallStopSignalHandlers();
  // Config errors surface before MPI starts, on every rank, with the file and field.
  EvlConfig config = LoadEffectiveConfig(flags.config_path, flags.overrides);
  return RunRankJob(argc, argv, config.train().threads(), [&](const Topology& topo) {
    LOG_IF(INFO, topo.rank == 0) << "job: " << topo.world << " rank(s), " << topo.local_world << " on this node ("
                                 << topo.host << "), " << topo.threads << " thread(s) per rank";
    const SlurmJobInfo job = SlurmJobFromEnv();
    LOG_IF(INFO, topo.rank == 0 && job.in_job) << "Slurm job " << job.job_id << ", SLURM_RESTART_COUNT "
                                               << job.restart_count << " (max " << config.slurm().max_requeues() << ")";
    std::unique_ptr<Communicator> comm;
    const bool cuda = TorchCudaAvailable();
    const auto backend = config.dist().backend();
    if (backend == COMM_NCCL || (backend == COMM_AUTO && cuda && NcclBuilt()))
      comm = MakeNcclCommunicator(config.dist().stall_timeout_s(), topo.local_rank);
    else
      comm = MakeMpiCommunicator(config.dist().stall_timeout_s());
    RankContext ctx{topo.rank, topo.world, topo.local_rank, topo.local_world, topo.threads};
    const int status = RunTraining(config, *comm, ctx, train_flags);
    if (status == kExitPreempted) RequeueIfSlurm(config, *comm, topo.rank);
    return status;
  });
}

}  // namespace evl
