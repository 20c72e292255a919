#include "evl/topology.h"

#include <glog/logging.h>
#include <mpi.h>
#include <sched.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <thread>
#include <vector>

#include "evl/abort.h"
#include "evl/runtime_info.h"

namespace evl {
namespace {

int EnvInt(const char* name, int fallback) {
  const char* v = std::getenv(name);
  return v ? std::atoi(v) : fallback;
}

}  // namespace

void RequireThreadMultiple(int provided) {
  if (provided >= MPI_THREAD_MULTIPLE) return;
  const char* names[] = {"MPI_THREAD_SINGLE", "MPI_THREAD_FUNNELED", "MPI_THREAD_SERIALIZED"};
  const std::string level = provided >= 0 && provided < 3 ? names[provided] : std::to_string(provided);
  throw std::runtime_error("this MPI provides only " + level +
                           ", and evl calls MPI from several threads (the communication thread, the arrival "
                           "board, the evaluator); use an MPI built with thread support (Open MPI: "
                           "--enable-mpi-thread-multiple, the default since 3.0)");
}

Topology InitTopology(int* argc, char*** argv, int requested_threads, DeviceRequest device) {
  int provided = 0;
  MPI_Init_thread(argc, argv, MPI_THREAD_MULTIPLE, &provided);
  RequireThreadMultiple(provided);
  Topology t;
  MPI_Comm_rank(MPI_COMM_WORLD, &t.rank);
  MPI_Comm_size(MPI_COMM_WORLD, &t.world);
  MPI_Comm local;
  MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, t.rank, MPI_INFO_NULL, &local);
  MPI_Comm_rank(local, &t.local_rank);
  MPI_Comm_size(local, &t.local_world);
  char host[256] = {};
  gethostname(host, sizeof host - 1);
  t.host = host;
  // Node index: the rank of this node's first rank among all nodes' first ranks (Slurm numbers
  // nodes the same way under its block distribution).
  MPI_Comm leaders;
  MPI_Comm_split(MPI_COMM_WORLD, t.local_rank == 0 ? 0 : MPI_UNDEFINED, t.rank, &leaders);
  if (leaders != MPI_COMM_NULL) {
    MPI_Comm_rank(leaders, &t.node);
    MPI_Comm_size(leaders, &t.nodes);
    MPI_Comm_free(&leaders);
  }
  MPI_Bcast(&t.node, 1, MPI_INT, 0, local);
  // Every local rank's CUDA_VISIBLE_DEVICES: tells per-task GPU binding from shared GPUs.
  constexpr int kCvd = 256;
  std::vector<char> cvd(kCvd, 0), all_cvd(static_cast<size_t>(kCvd) * t.local_world, 0);
  const char* mine = std::getenv("CUDA_VISIBLE_DEVICES");
  std::snprintf(cvd.data(), kCvd, "%s", mine ? mine : kUnset);
  MPI_Allgather(cvd.data(), kCvd, MPI_CHAR, all_cvd.data(), kCvd, MPI_CHAR, local);
  MPI_Comm_free(&local);
  MPI_Bcast(&t.nodes, 1, MPI_INT, 0, MPI_COMM_WORLD);
  const std::string who = "rank " + std::to_string(t.rank) + " on " + t.host + ": ";
  // Slurm's numbering describes this process only when srun started the ranks themselves (not
  // mpirun's daemons inside an allocation): then its task ids are the MPI ranks.
  const bool srun_tasks = EnvInt("SLURM_STEP_NUM_TASKS", -1) == t.world && EnvInt("SLURM_PROCID", -1) == t.rank;
  for (const auto& [var, value] : {std::pair<const char*, int>{"OMPI_COMM_WORLD_LOCAL_RANK", t.local_rank},
                                   {"SLURM_LOCALID", t.local_rank},
                                   {"SLURM_NODEID", t.node}}) {
    if (!srun_tasks && std::string(var).rfind("SLURM_", 0) == 0) continue;
    const int env = EnvInt(var, -1);
    if (env >= 0 && env != value)
      throw std::runtime_error(who + "MPI places it at " + (std::string(var) == "SLURM_NODEID" ? "node " : "local rank ") +
                               std::to_string(value) + " but " + var + "=" + std::to_string(env) +
                               " (launch one task per GPU with srun --mpi=pmix or mpirun, not both)");
  }
  DeviceFacts facts = ProcessDeviceFacts(device);
  facts.local_rank = t.local_rank;
  facts.local_world = t.local_world;
  for (int r = 0; r < t.local_world; ++r) facts.local_visible_devices.emplace_back(&all_cvd[static_cast<size_t>(r) * kCvd]);
  facts.slurm_gpus_on_node = srun_tasks ? EnvInt("SLURM_GPUS_ON_NODE", -1) : -1;
  try {
    t.device = ChooseDevice(facts);
    // NCCL reads it at communicator init, which comes later in this process.
    if (RanksShareAGpu(facts)) setenv("NCCL_MULTI_RANK_GPU_ENABLE", "1", 1);
  } catch (const std::exception& e) {
    throw std::runtime_error(who + e.what());
  }
  cpu_set_t set;
  int usable = static_cast<int>(std::thread::hardware_concurrency());
  if (sched_getaffinity(0, sizeof set, &set) == 0) usable = CPU_COUNT(&set);
  const int all = static_cast<int>(std::thread::hardware_concurrency());
  // Bound to a subset: use it all. Unbound: share the node's cores among its ranks.
  t.threads = requested_threads > 0 ? requested_threads
                                    : std::max(1, usable < all ? usable : all / std::max(1, t.local_world));
  SetTorchNumThreads(t.threads);
  // Every rank says once where it runs: the first thing to read when a multi-node job misbehaves.
  LOG(INFO) << "rank " << t.rank << "/" << t.world << " on " << t.host << " (node " << t.node << "/" << t.nodes
            << ", local rank " << t.local_rank << "/" << t.local_world << "), device " << t.device << ", "
            << t.threads << " thread(s)";
  return t;
}

void FinalizeTopology() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
}

int RunRankJob(int* argc, char*** argv, int requested_threads, DeviceRequest device,
               const std::function<int(const Topology&)>& body) {
  int status = 0;
  try {
    // Inside the try: a rank whose topology check fails must end the job, not leave it waiting.
    const Topology topo = InitTopology(argc, argv, requested_threads, device);
    status = body(topo);
  } catch (const std::exception& e) {
    LOG(ERROR) << e.what();
    AbortJob(kExitError);
  }
  FinalizeTopology();
  return status;
}

}  // namespace evl
