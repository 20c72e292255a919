// `evl train`: one rank of a training job (or a 1-rank job without mpirun).
#include <glog/logging.h>

#include "commands.h"
#include "config.h"

#include "evl/communicator.h"
#include "evl/runtime_info.h"
#include "evl/topology.h"
#include "evl/trainer.h"
#include "evl/trainer.h"

namespace evl {

int RunTrain(int* argc, char*** argv, const ConfigFlags& flags, const TrainFlags& train_flags) {
  // Config errors surface before MPI starts, on every rank, with the file and field.
  EvlConfig config = LoadEffectiveConfig(flags.config_path, flags.overrides);
  return RunRankJob(argc, argv, config.train().threads(), [&](const Topology& topo) {
    LOG_IF(INFO, topo.rank == 0) << "job: " << topo.world << " rank(s), " << topo.local_world << " on this node ("
                                 << topo.host << "), " << topo.threads << " thread(s) per rank";
    std::unique_ptr<Communicator> comm;
    const bool cuda = TorchCudaAvailable();
    const auto backend = config.dist().backend();
    if (backend == COMM_NCCL || (backend == COMM_AUTO && cuda && NcclBuilt()))
      comm = MakeNcclCommunicator(config.dist().stall_timeout_s(), topo.local_rank);
    else
      comm = MakeMpiCommunicator(config.dist().stall_timeout_s());
    RankContext ctx{topo.rank, topo.world, topo.local_rank, topo.local_world, topo.threads};
    InstallStopSignalHandlers();
    return RunTraining(config, *comm, ctx, train_flags);
  });
}

}  // namespace evl
