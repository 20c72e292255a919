#include "evl/topology.h"

#include <glog/logging.h>
#include <mpi.h>
#include <sched.h>
#include <unistd.h>

#include <cstdlib>
#include <stdexcept>
#include <thread>

#include "evl/runtime_info.h"

namespace evl {
namespace {

int EnvInt(const char* name, int fallback) {
  const char* v = std::getenv(name);
  return v ? std::atoi(v) : fallback;
}

}  // namespace

Topology InitTopology(int* argc, char*** argv, int requested_threads) {
  int provided = 0;
  MPI_Init_thread(argc, argv, MPI_THREAD_MULTIPLE, &provided);
  if (provided < MPI_THREAD_MULTIPLE)
    LOG(WARNING) << "MPI provides thread level " << provided << " < MPI_THREAD_MULTIPLE";
  Topology t;
  MPI_Comm_rank(MPI_COMM_WORLD, &t.rank);
  MPI_Comm_size(MPI_COMM_WORLD, &t.world);
  MPI_Comm local;
  MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, t.rank, MPI_INFO_NULL, &local);
  MPI_Comm_rank(local, &t.local_rank);
  MPI_Comm_size(local, &t.local_world);
  MPI_Comm_free(&local);
  char host[256] = {};
  gethostname(host, sizeof host - 1);
  t.host = host;
  for (const char* var : {"OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID"}) {
    const int env = EnvInt(var, -1);
    if (env >= 0 && env != t.local_rank)
      throw std::runtime_error("rank " + std::to_string(t.rank) + " on " + t.host + ": local rank " +
                               std::to_string(t.local_rank) + " from MPI disagrees with " + var + "=" +
                               std::to_string(env));
  }
  if (TorchCudaAvailable()) {
    // One GPU per local rank; the count comes from LibTorch via the model library.
    const int gpus = TorchCudaDeviceCount();
    if (t.local_world > gpus)
      throw std::runtime_error(std::to_string(t.local_world) + " ranks on " + t.host + " but " +
                               std::to_string(gpus) + " GPU(s) visible");
  }
  cpu_set_t set;
  int usable = static_cast<int>(std::thread::hardware_concurrency());
  if (sched_getaffinity(0, sizeof set, &set) == 0) usable = CPU_COUNT(&set);
  const int all = static_cast<int>(std::thread::hardware_concurrency());
  // Bound to a subset: use it all. Unbound: share the node's cores among its ranks.
  t.threads = requested_threads > 0 ? requested_threads
                                    : std::max(1, usable < all ? usable : all / std::max(1, t.local_world));
  SetTorchNumThreads(t.threads);
  return t;
}

void FinalizeTopology() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
}

int RunRankJob(int* argc, char*** argv, int requested_threads, const std::function<int(const Topology&)>& body) {
  const Topology topo = InitTopology(argc, argv, requested_threads);
  int status = 0;
  try {
    status = body(topo);
  } catch (const std::exception& e) {
    LOG(ERROR) << e.what();
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  FinalizeTopology();
  return status;
}

}  // namespace evl
