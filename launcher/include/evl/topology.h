// Process topology of a job: MPI initialisation, world/local ranks (from MPI_Comm_split_type,
// cross-checked against the launcher's environment), one GPU per local rank when CUDA is present,
// and compute threads per rank from the cores this rank may use.
#pragma once

#include <functional>
#include <string>

#include "evl/device_choice.h"

namespace evl {

struct Topology {
  int rank = 0, world = 1;
  int local_rank = 0, local_world = 1;
  int node = 0, nodes = 1;  // this rank's node index, number of nodes
  int threads = 1;
  std::string host;
  std::string device;  // "cpu" or "cuda:K": the one place the device is decided
};

// Initialises MPI (MPI_THREAD_MULTIPLE) and fills the topology, the device by ChooseDevice
// (evl/device_choice.h). `requested_threads` > 0 overrides the automatic choice. Throws
// std::runtime_error on an inconsistent environment (local rank disagreeing with
// OMPI_COMM_WORLD_LOCAL_RANK/SLURM_LOCALID, node index with SLURM_NODEID) or a refused device.
Topology InitTopology(int* argc, char*** argv, int requested_threads, DeviceRequest device);
void FinalizeTopology();

// Throws std::runtime_error naming the level unless `provided` (MPI_Init_thread's answer) is
// MPI_THREAD_MULTIPLE: evl calls MPI from more than one thread.
void RequireThreadMultiple(int provided);

// One rank's job: InitTopology, `body`, FinalizeTopology. An exception from `body` is logged and
// takes the whole job down with MPI_Abort (other ranks may be waiting in a collective). Returns
// body's status.
int RunRankJob(int* argc, char*** argv, int requested_threads, DeviceRequest device,
               const std::function<int(const Topology&)>& body);

}  // namespace evl
