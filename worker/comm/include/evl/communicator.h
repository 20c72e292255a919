// Collectives between the ranks of a job, behind one interface with two backends: MPI for CPU
// tensors and NCCL for CUDA tensors (built when NCCL and a CUDA LibTorch are found). Callers never
// choose a backend: the job's communicator routes each collective by its tensor's device
// (MakeRoutingCommunicator), as torch.distributed does with "cpu:gloo,cuda:nccl".
//
// Every collective has a name and goes through one FIFO queue served by a communication thread, so
// collectives run in the same order on every rank whichever thread asked, and the training thread
// can overlap gradient all-reduces with the rest of backward. Every wait is bounded by the stall
// timeout: a collective that does not complete in time is reported (name, sequence number, rank)
// and the job is aborted with MPI_Abort instead of hanging.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <ATen/core/Tensor.h>

namespace evl {

// kAvg: the sum over ranks divided by the world size, floating-point tensors only. On NCCL it is
// ncclAvg, folded into the collective's last step instead of a separate pass over the result.
enum class ReduceOp { kSum, kMax, kMin, kAvg };

class CommWork {
 public:
  virtual ~CommWork() = default;
  // Blocks until done (bounded by the stall timeout).
  virtual void Wait() = 0;
  // Blocks until done, bounded by this operation's own deadline instead of the stall timeout: for
  // a collective that legitimately waits longer, such as the ranks waiting while rank 0 writes the
  // stop checkpoint. Backends without per-operation deadlines use the stall timeout.
  virtual void WaitWithin(double timeout_s) { Wait(); }
};

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int world() const = 0;
  virtual std::string backend() const = 0;

  // In place. Tensors must be contiguous; float/double/int64/bfloat16 (MPI) as needed by evl.
  virtual std::shared_ptr<CommWork> AllReduceAsync(at::Tensor tensor, ReduceOp op, const std::string& name) = 0;
  virtual std::shared_ptr<CommWork> BroadcastAsync(at::Tensor tensor, int root, const std::string& name) = 0;
  // Gathers equally sized tensors from every rank into `out` ([world * numel]).
  virtual std::shared_ptr<CommWork> AllGatherAsync(at::Tensor in, at::Tensor out, const std::string& name) = 0;

  void AllReduce(at::Tensor t, ReduceOp op, const std::string& name) { AllReduceAsync(t, op, name)->Wait(); }
  // timeout_s > 0: this operation's own deadline (CommWork::WaitWithin) instead of the stall timeout.
  void Broadcast(at::Tensor t, int root, const std::string& name, double timeout_s = 0) {
    auto work = BroadcastAsync(t, root, name);
    timeout_s > 0 ? work->WaitWithin(timeout_s) : work->Wait();
  }
  void AllGather(at::Tensor in, at::Tensor out, const std::string& name) { AllGatherAsync(in, out, name)->Wait(); }
  // Broadcasts a string from root (length first, then bytes).
  std::string BroadcastString(const std::string& s, int root, const std::string& name, double timeout_s = 0);
};

// MPI backend over MPI_COMM_WORLD. REQUIRES: MPI initialised with MPI_THREAD_MULTIPLE: the
// communication thread, the arrival board and the stall watchdog call MPI from different threads.
std::unique_ptr<Communicator> MakeMpiCommunicator(double stall_timeout_s);

// NCCL backend; the unique id travels over MPI from rank 0. Collectives run on a stream of their
// own that waits (by event, not by host sync) for the caller's current stream. Throws
// std::runtime_error when NCCL was not built or CUDA is unavailable, naming which.
// REQUIRES: device_index is the topology's choice for this rank (evl/topology.h).
std::unique_ptr<Communicator> MakeNcclCommunicator(double stall_timeout_s, int device_index);

// The job's communicator: CPU tensors go to `cpu`, every other device's to `accelerator`.
// `accelerator` may be null (a CPU job); a non-CPU tensor then throws naming the collective.
// rank()/world() are `cpu`'s; both backends must span the same ranks. backend() names both, e.g.
// "mpi+nccl". Collectives of one backend keep their order; the two backends are independent.
std::unique_ptr<Communicator> MakeRoutingCommunicator(std::unique_ptr<Communicator> cpu,
                                                      std::unique_ptr<Communicator> accelerator);

}  // namespace evl
