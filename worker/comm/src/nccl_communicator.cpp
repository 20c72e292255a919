// NCCL backend: one communicator per job, unique id from rank 0 over MPI, collectives on a
// dedicated CUDA stream, asynchronous errors polled while waiting (ncclCommGetAsyncError) and the
// communicator aborted on failure. Stream handling follows c10d's ProcessGroupNCCL: the NCCL stream
// waits for an event recorded on the caller's current stream (no host synchronisation inside the
// autograd hooks), the tensor's memory is recorded as used on the NCCL stream so that the caching
// allocator does not hand it out again early, and an aborted communicator is never destroyed.
#include "evl/communicator.h"
#include "evl/nccl_info.h"
#include "evl/abort.h"

#include "arrival_board.h"

#include <mpi.h>

#include <chrono>
#include <stdexcept>
#include <thread>

#ifdef EVL_HAVE_NCCL
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>
#include <nccl.h>

#include <atomic>
#include <exception>
#include <mutex>
#endif

namespace evl {

bool NcclBuilt() {
#ifdef EVL_HAVE_NCCL
  return true;
#else
  return false;
#endif
}

#ifndef EVL_HAVE_NCCL

std::unique_ptr<Communicator> MakeNcclCommunicator(double, int) {
  throw std::runtime_error("NCCL communicator: this evl was built without NCCL (see `evl info`)");
}

#else

namespace {

class NcclWork : public CommWork {
 public:
  NcclWork(cudaEvent_t ev, ncclComm_t comm, std::shared_ptr<std::atomic<bool>> aborted, double timeout_s,
           std::string name, ArrivalBoard* board, int64_t seq)
      : ev_(ev), comm_(comm), aborted_(std::move(aborted)), timeout_s_(timeout_s), name_(std::move(name)),
        board_(board), seq_(seq) {}
  ~NcclWork() override { cudaEventDestroy(ev_); }
  // Blocks the host until the collective is done (the reducer reads the result next), polling
  // NCCL's asynchronous errors and the stall deadline meanwhile.
  void Wait() override {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s_);
    while (true) {
      cudaError_t st = cudaEventQuery(ev_);
      if (st == cudaSuccess) return;
      if (st != cudaErrorNotReady) throw std::runtime_error("NCCL '" + name_ + "': " + cudaGetErrorString(st));
      ncclResult_t async = ncclSuccess;
      ncclCommGetAsyncError(comm_, &async);
      if (async != ncclSuccess) {
        Abort();
        throw std::runtime_error("NCCL '" + name_ + "' failed: " + ncclGetErrorString(async));
      }
      if (std::chrono::steady_clock::now() > deadline) {
        int rank = 0;
        MPI_Comm_rank(MPI_COMM_WORLD, &rank);
        // ncclCommAbort runs under the abort's watchdog (it may block on a peer that is gone).
        AbortJob(
            kExitStalled,
            [&] {
              return "rank " + std::to_string(rank) + ": NCCL collective #" + std::to_string(seq_) + " '" + name_ +
                     "' did not complete in " + std::to_string(static_cast<int64_t>(timeout_s_)) + " s; " +
                     board_->StallReport(seq_) + "; aborting the job";
            },
            [this] { Abort(); });
      }
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
  }

 private:
  void Abort() {
    if (!aborted_->exchange(true)) ncclCommAbort(comm_);
  }
  cudaEvent_t ev_;
  ncclComm_t comm_;
  std::shared_ptr<std::atomic<bool>> aborted_;
  double timeout_s_;
  std::string name_;
  ArrivalBoard* board_;
  int64_t seq_;
};

void CheckCuda(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(std::string("NCCL communicator: ") + what + ": " + cudaGetErrorString(e));
}
void CheckNccl(ncclResult_t r, const std::string& what) {
  if (r != ncclSuccess) throw std::runtime_error("NCCL '" + what + "': " + ncclGetErrorString(r));
}

ncclDataType_t NcclType(const at::Tensor& t) {
  switch (t.scalar_type()) {
    case at::kFloat: return ncclFloat32;
    case at::kHalf: return ncclFloat16;
    case at::kBFloat16: return ncclBfloat16;
    case at::kDouble: return ncclFloat64;
    case at::kLong: return ncclInt64;
    case at::kInt: return ncclInt32;
    case at::kByte: return ncclUint8;
    default: throw std::runtime_error("NCCL: unsupported dtype");
  }
}

class NcclCommunicator : public Communicator {
 public:
  NcclCommunicator(double timeout_s, int device) : timeout_s_(timeout_s), device_(device) {
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess || count == 0)
      throw std::runtime_error(std::string("NCCL communicator: no CUDA device (") +
                               (e != cudaSuccess ? cudaGetErrorString(e) : "0 devices") + ")");
    if (device >= count)
      throw std::runtime_error("NCCL communicator: device " + std::to_string(device) + " requested, " +
                               std::to_string(count) + " visible");
    CheckCuda(cudaSetDevice(device), "cudaSetDevice");
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &world_);
    ncclUniqueId id;
    if (rank_ == 0) CheckNccl(ncclGetUniqueId(&id), "ncclGetUniqueId");
    MPI_Bcast(&id, sizeof id, MPI_BYTE, 0, MPI_COMM_WORLD);
    CheckNccl(ncclCommInitRank(&comm_, world_, id, rank_), "ncclCommInitRank");
    CheckCuda(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate");
    CheckCuda(cudaEventCreateWithFlags(&ready_, cudaEventDisableTiming), "cudaEventCreate");
  }
  ~NcclCommunicator() override {
    // On an error path (an exception unwinding past the communicator's owner) ncclCommDestroy would
    // wait for peers that may be gone: abort instead. A collective that failed has aborted it
    // already (NcclWork). After ncclCommAbort its resources are gone; destroying it is undefined.
    if (comm_ && std::uncaught_exceptions() > 0 && !aborted_->exchange(true)) ncclCommAbort(comm_);
    if (comm_ && !aborted_->load()) ncclCommDestroy(comm_);
    if (ready_) cudaEventDestroy(ready_);
    if (stream_) cudaStreamDestroy(stream_);
  }
  int rank() const override { return rank_; }
  int world() const override { return world_; }
  std::string backend() const override { return "nccl"; }

  std::shared_ptr<CommWork> AllReduceAsync(at::Tensor t, ReduceOp op, const std::string& name) override {
    std::lock_guard<std::mutex> lock(mu_);  // one collective issued at a time, numbered in order
    if (op == ReduceOp::kAvg && !t.is_floating_point())
      throw std::runtime_error("NCCL all-reduce '" + name + "': an average needs a floating-point tensor");
    Prepare(t, name);
    const ncclRedOp_t nop = op == ReduceOp::kSum ? ncclSum
                            : op == ReduceOp::kAvg ? ncclAvg
                            : op == ReduceOp::kMax ? ncclMax
                                                   : ncclMin;
    CheckNccl(ncclAllReduce(t.data_ptr(), t.data_ptr(), t.numel(), NcclType(t), nop, comm_, stream_), name);
    return Record(name, {t});
  }
  std::shared_ptr<CommWork> BroadcastAsync(at::Tensor t, int root, const std::string& name) override {
    std::lock_guard<std::mutex> lock(mu_);  // one collective issued at a time, numbered in order
    Prepare(t, name);
    CheckNccl(ncclBroadcast(t.data_ptr(), t.data_ptr(), t.numel(), NcclType(t), root, comm_, stream_), name);
    return Record(name, {t});
  }
  std::shared_ptr<CommWork> AllGatherAsync(at::Tensor in, at::Tensor out, const std::string& name) override {
    std::lock_guard<std::mutex> lock(mu_);  // one collective issued at a time, numbered in order
    Prepare(in, name);
    if (!out.is_cuda() || !out.is_contiguous() || out.numel() != in.numel() * world_)
      throw std::runtime_error("NCCL all-gather '" + name + "': output must be a contiguous CUDA tensor of world x input");
    CheckNccl(ncclAllGather(in.data_ptr(), out.data_ptr(), in.numel(), NcclType(in), comm_, stream_), name);
    return Record(name, {in, out});
  }

 private:
  // Orders the collective after the work that produced `t` on the caller's current stream.
  void Prepare(const at::Tensor& t, const std::string& name) {
    if (!t.is_cuda() || !t.is_contiguous())
      throw std::runtime_error("NCCL '" + name + "' needs a contiguous CUDA tensor");
    if (t.get_device() != device_)
      throw std::runtime_error("NCCL '" + name + "': tensor on cuda:" + std::to_string(t.get_device()) +
                               ", communicator on cuda:" + std::to_string(device_));
    if (aborted_->load()) throw std::runtime_error("NCCL '" + name + "': the communicator was aborted");
    board_.Arrive(seq_, name);
    CheckCuda(cudaSetDevice(device_), "cudaSetDevice");  // autograd hooks run on a thread of their own
    const cudaStream_t current = c10::cuda::getCurrentCUDAStream(device_).stream();
    CheckCuda(cudaEventRecord(ready_, current), "cudaEventRecord");
    CheckCuda(cudaStreamWaitEvent(stream_, ready_, 0), "cudaStreamWaitEvent");
  }
  // Marks `t` as used on the NCCL stream and returns the work's completion event.
  std::shared_ptr<CommWork> Record(const std::string& name, std::initializer_list<at::Tensor> used) {
    for (const auto& t : used)
      c10::cuda::CUDACachingAllocator::recordStream(t.storage().data_ptr(),
                                                    c10::cuda::getStreamFromExternal(stream_, device_));
    cudaEvent_t ev;
    CheckCuda(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming), "cudaEventCreate");
    CheckCuda(cudaEventRecord(ev, stream_), "cudaEventRecord");
    return std::make_shared<NcclWork>(ev, comm_, aborted_, timeout_s_, name, &board_, seq_++);
  }

  double timeout_s_;
  int device_;
  int rank_ = 0, world_ = 1;
  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;
  cudaEvent_t ready_ = nullptr;  // re-recorded per collective; the stream wait captures it at once
  std::shared_ptr<std::atomic<bool>> aborted_ = std::make_shared<std::atomic<bool>>(false);
  std::mutex mu_;
  ArrivalBoard board_;  // numbers the collectives alike on every rank (Prepare, then Record)
  int64_t seq_ = 0;
};

}  // namespace

std::unique_ptr<Communicator> MakeNcclCommunicator(double stall_timeout_s, int device_index) {
  return std::make_unique<NcclCommunicator>(stall_timeout_s, device_index);
}

#endif

}  // namespace evl
