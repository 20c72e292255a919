// NCCL backend: one communicator per job, unique id from rank 0 over MPI, collectives on a
// dedicated CUDA stream, asynchronous errors polled while waiting (ncclCommGetAsyncError) and the
// communicator aborted on failure. The communicator is non-blocking (config.blocking = 0) so that
// its init, each enqueue and its finalize are waited for under a deadline and can be aborted; that
// state machine lives in nccl_lifecycle.h over a table of the NCCL calls (RealNcclApi, below), and
// is tested there with a fake NCCL. Stream handling follows c10d's ProcessGroupNCCL: the NCCL stream
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

#include <exception>
#include <mutex>

#include "nccl_lifecycle.h"
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

static_assert(kNcclSuccess == ncclSuccess && kNcclInProgress == ncclInProgress,
              "nccl_lifecycle.h's result codes must be ncclResult_t's");

// The lifecycle's table, filled with the real library and the steady clock.
NcclApi RealNcclApi() {
  NcclApi api;
  api.commInitRankConfig = [](void** comm, int nranks, const void* unique_id, int rank) {
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    // Returns at once: a rank whose peers never join is then waited for with a deadline and its
    // half-made communicator aborted, where ncclCommInitRank would block with no way out.
    config.blocking = 0;
    ncclComm_t made = nullptr;
    const ncclResult_t r =
        ncclCommInitRankConfig(&made, nranks, *static_cast<const ncclUniqueId*>(unique_id), rank, &config);
    *comm = made;
    return static_cast<int>(r);
  };
  api.commGetAsyncError = [](void* comm, int* async_error) {
    ncclResult_t async = ncclSuccess;
    const ncclResult_t r = ncclCommGetAsyncError(static_cast<ncclComm_t>(comm), &async);
    *async_error = static_cast<int>(async);
    return static_cast<int>(r);
  };
  api.commFinalize = [](void* comm) { return static_cast<int>(ncclCommFinalize(static_cast<ncclComm_t>(comm))); };
  api.commDestroy = [](void* comm) { return static_cast<int>(ncclCommDestroy(static_cast<ncclComm_t>(comm))); };
  api.commAbort = [](void* comm) { return static_cast<int>(ncclCommAbort(static_cast<ncclComm_t>(comm))); };
  api.getErrorString = [](int result) { return std::string(ncclGetErrorString(static_cast<ncclResult_t>(result))); };
  api.getLastError = [](void* comm) {
    const char* last = ncclGetLastError(static_cast<ncclComm_t>(comm));
    return std::string(last ? last : "");
  };
  api.eventQuery = [](void* event, std::string* error) {
    const cudaError_t st = cudaEventQuery(static_cast<cudaEvent_t>(event));
    if (st == cudaSuccess) return EventStatus::kDone;
    if (st == cudaErrorNotReady) return EventStatus::kNotReady;
    *error = cudaGetErrorString(st);
    return EventStatus::kError;
  };
  api.now = [] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
  };
  api.sleep = [](double s) { std::this_thread::sleep_for(std::chrono::duration<double>(s)); };
  return api;
}

namespace {

// What a collective that outlives its deadline does: the job ends (kExitStalled) with the ranks
// that never reached it named; ncclCommAbort runs under the abort's watchdog, since it may block
// on a peer that is gone.
StallHandler AbortJobOnStall(std::shared_ptr<NcclLifecycle> life, ArrivalBoard* board, int rank, int64_t seq,
                             std::string name, double timeout_s, std::string what) {
  return [=](double) {
    AbortJob(
        kExitStalled,
        [&] {
          return "rank " + std::to_string(rank) + ": NCCL collective #" + std::to_string(seq) + " '" + name + "' " +
                 what + " in " + std::to_string(static_cast<int64_t>(timeout_s)) + " s; " + board->StallReport(seq) +
                 "; aborting the job";
        },
        [&] { life->Abort(); });
  };
}

class NcclWork : public CommWork {
 public:
  NcclWork(cudaEvent_t ev, std::shared_ptr<NcclLifecycle> life, double timeout_s, std::string name,
           ArrivalBoard* board, int rank, int64_t seq)
      : ev_(ev), life_(std::move(life)), timeout_s_(timeout_s), name_(std::move(name)), board_(board), rank_(rank),
        seq_(seq) {}
  ~NcclWork() override { cudaEventDestroy(ev_); }
  // Blocks the host until the collective is done (the reducer reads the result next), polling
  // NCCL's asynchronous errors and the stall deadline meanwhile.
  void Wait() override { WaitWithin(timeout_s_); }
  void WaitWithin(double timeout_s) override {
    life_->WaitEvent(ev_, name_, timeout_s,
                     AbortJobOnStall(life_, board_, rank_, seq_, name_, timeout_s, "did not complete"));
  }

 private:
  cudaEvent_t ev_;
  std::shared_ptr<NcclLifecycle> life_;  // shared: a work may be waited on by another thread
  double timeout_s_;
  std::string name_;
  ArrivalBoard* board_;
  int rank_;
  int64_t seq_;
};

void CheckCuda(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(std::string("NCCL communicator: ") + what + ": " + cudaGetErrorString(e));
}
void CheckNccl(ncclResult_t r, const std::string& what) {
  if (r != ncclSuccess) throw std::runtime_error("NCCL '" + what + "': " + ncclGetErrorString(r));
}

ncclDataType_t NcclType(const at::Tensor& t, const std::string& name) {
  switch (t.scalar_type()) {
    case at::kFloat: return ncclFloat32;
    case at::kHalf: return ncclFloat16;
    case at::kBFloat16: return ncclBfloat16;
    case at::kDouble: return ncclFloat64;
    case at::kLong: return ncclInt64;
    case at::kInt: return ncclInt32;
    case at::kByte: return ncclUint8;
    default:
      throw std::runtime_error("NCCL '" + name + "': unsupported dtype " + std::string(c10::toString(t.scalar_type())));
  }
}

std::string DtypeAndDevice(const at::Tensor& t) {
  return std::string(c10::toString(t.scalar_type())) + " on " + t.device().str();
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
    life_ = std::make_shared<NcclLifecycle>(RealNcclApi(), rank_, world_);
    CheckCuda(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate");
    try {
      CheckCuda(cudaEventCreateWithFlags(&ready_, cudaEventDisableTiming), "cudaEventCreate");
      // The init deadline is the stall timeout: the ranks start it together (just past the id's
      // broadcast), a healthy init takes seconds even on many nodes, and the stall timeout is the
      // job's one answer to "how long may a peer stay silent"; a second knob would only be set wrong.
      life_->Init(&id, timeout_s_);
    } catch (...) {
      DestroyCudaObjects();  // the destructor does not run for a constructor that throws
      throw;
    }
  }
  ~NcclCommunicator() override {
    // Finalize's deadline is the stall timeout too, not a fraction of it: finalize is the ranks'
    // last meeting (it flushes what was issued and waits for the communicator to be quiet on every
    // rank), so ranks reach it as unevenly as a collective, e.g. while rank 0 writes the last
    // checkpoint; a shorter deadline would abort a healthy communicator on the other ranks.
    // On an error path (an exception unwinding past the communicator's owner) finalize would wait
    // for peers that may be gone: the lifecycle aborts at once instead.
    life_->Shutdown(timeout_s_, std::uncaught_exceptions() > 0);
    DestroyCudaObjects();
  }
  int rank() const override { return rank_; }
  int world() const override { return world_; }
  std::string backend() const override { return "nccl"; }

  std::shared_ptr<CommWork> AllReduceAsync(at::Tensor t, ReduceOp op, const std::string& name) override {
    std::lock_guard<std::mutex> lock(mu_);  // one collective issued at a time, numbered in order
    if (op == ReduceOp::kAvg && !t.is_floating_point())
      throw std::runtime_error("NCCL all-reduce '" + name + "': an average needs a floating-point tensor");
    const ncclDataType_t type = Prepare(t, name);
    const ncclRedOp_t nop = op == ReduceOp::kSum ? ncclSum
                            : op == ReduceOp::kAvg ? ncclAvg
                            : op == ReduceOp::kMax ? ncclMax
                                                   : ncclMin;
    return Issue(name, ncclAllReduce(t.data_ptr(), t.data_ptr(), t.numel(), type, nop, Comm(), stream_), {t});
  }
  std::shared_ptr<CommWork> BroadcastAsync(at::Tensor t, int root, const std::string& name) override {
    std::lock_guard<std::mutex> lock(mu_);  // one collective issued at a time, numbered in order
    const ncclDataType_t type = Prepare(t, name);
    return Issue(name, ncclBroadcast(t.data_ptr(), t.data_ptr(), t.numel(), type, root, Comm(), stream_), {t});
  }
  std::shared_ptr<CommWork> AllGatherAsync(at::Tensor in, at::Tensor out, const std::string& name) override {
    std::lock_guard<std::mutex> lock(mu_);  // one collective issued at a time, numbered in order
    // Checked before Prepare, which tells the arrival board this rank reached the collective.
    if (out.scalar_type() != in.scalar_type() || out.device() != in.device())
      throw std::runtime_error("NCCL all-gather '" + name + "': input is " + DtypeAndDevice(in) + ", output is " +
                               DtypeAndDevice(out) + "; they must have the same dtype and device");
    if (!out.is_contiguous() || out.numel() != in.numel() * world_)
      throw std::runtime_error("NCCL all-gather '" + name + "': output must be a contiguous tensor of world (" +
                               std::to_string(world_) + ") x input (" + std::to_string(in.numel()) + ") elements, not " +
                               std::to_string(out.numel()));
    const ncclDataType_t type = Prepare(in, name);
    return Issue(name, ncclAllGather(in.data_ptr(), out.data_ptr(), in.numel(), type, Comm(), stream_), {in, out});
  }

 private:
  ncclComm_t Comm() const { return static_cast<ncclComm_t>(life_->comm()); }

  // Checks `t` and orders the collective after the work that produced it on the caller's current
  // stream; returns its NCCL type.
  ncclDataType_t Prepare(const at::Tensor& t, const std::string& name) {
    if (!t.is_cuda() || !t.is_contiguous())
      throw std::runtime_error("NCCL '" + name + "' needs a contiguous CUDA tensor");
    if (t.get_device() != device_)
      throw std::runtime_error("NCCL '" + name + "': tensor on cuda:" + std::to_string(t.get_device()) +
                               ", communicator on cuda:" + std::to_string(device_));
    const ncclDataType_t type = NcclType(t, name);
    life_->CheckUsable(name);
    board_.Arrive(seq_, name);
    CheckCuda(cudaSetDevice(device_), "cudaSetDevice");  // autograd hooks run on a thread of their own
    const cudaStream_t current = c10::cuda::getCurrentCUDAStream(device_).stream();
    CheckCuda(cudaEventRecord(ready_, current), "cudaEventRecord");
    CheckCuda(cudaStreamWaitEvent(stream_, ready_, 0), "cudaStreamWaitEvent");
    return type;
  }
  // Waits until the collective just called (`result`) is enqueued — a non-blocking communicator
  // may answer ncclInProgress, and nothing may go on its stream before that ends — then marks the
  // tensors as used on the NCCL stream and returns the work's completion event.
  std::shared_ptr<CommWork> Issue(const std::string& name, ncclResult_t result, std::initializer_list<at::Tensor> used) {
    life_->WaitEnqueued(static_cast<int>(result), name, timeout_s_,
                        AbortJobOnStall(life_, &board_, rank_, seq_, name, timeout_s_, "was not enqueued"));
    for (const auto& t : used)
      c10::cuda::CUDACachingAllocator::recordStream(t.storage().data_ptr(),
                                                    c10::cuda::getStreamFromExternal(stream_, device_));
    cudaEvent_t ev;
    CheckCuda(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming), "cudaEventCreate");
    CheckCuda(cudaEventRecord(ev, stream_), "cudaEventRecord");
    return std::make_shared<NcclWork>(ev, life_, timeout_s_, name, &board_, rank_, seq_++);
  }
  void DestroyCudaObjects() {
    if (ready_) cudaEventDestroy(ready_);
    if (stream_) cudaStreamDestroy(stream_);
    ready_ = nullptr;
    stream_ = nullptr;
  }

  double timeout_s_;
  int device_;
  int rank_ = 0, world_ = 1;
  std::shared_ptr<NcclLifecycle> life_;  // made once the rank is known; shared with the works
  cudaStream_t stream_ = nullptr;
  cudaEvent_t ready_ = nullptr;  // re-recorded per collective; the stream wait captures it at once
  std::mutex mu_;
  ArrivalBoard board_;  // numbers the collectives alike on every rank (Prepare, then Issue)
  int64_t seq_ = 0;
};

}  // namespace

std::unique_ptr<Communicator> MakeNcclCommunicator(double stall_timeout_s, int device_index) {
  return std::make_unique<NcclCommunicator>(stall_timeout_s, device_index);
}

#endif

}  // namespace evl
