#include "evl/communicator.h"

#include "arrival_board.h"
#include "collective_queue.h"

#include <mpi.h>
#include <torch/torch.h>

#include <cstring>
#include <functional>
#include <limits>

namespace evl {

std::string Communicator::BroadcastString(const std::string& s, int root, const std::string& name, double timeout_s) {
  auto len = torch::tensor({static_cast<int64_t>(s.size())}, torch::kLong);
  Broadcast(len, root, name + ".length", timeout_s);
  auto bytes = torch::zeros({len.item<int64_t>()}, torch::kUInt8);
  if (rank() == root && !s.empty()) std::memcpy(bytes.data_ptr(), s.data(), s.size());
  Broadcast(bytes, root, name, timeout_s);
  return std::string(reinterpret_cast<const char*>(bytes.data_ptr()), bytes.numel());
}

namespace {

class WorkHandle : public CommWork {
 public:
  WorkHandle(CollectiveQueue* w, std::shared_ptr<CollectiveQueue::Job> j) : worker_(w), job_(std::move(j)) {}
  void Wait() override { worker_->Wait(job_); }
  void WaitWithin(double timeout_s) override { worker_->Wait(job_, timeout_s); }

 private:
  CollectiveQueue* worker_;
  std::shared_ptr<CollectiveQueue::Job> job_;
};

MPI_Datatype MpiType(const at::Tensor& t) {
  switch (t.scalar_type()) {
    case at::kFloat: return MPI_FLOAT;
    case at::kDouble: return MPI_DOUBLE;
    case at::kLong: return MPI_INT64_T;
    case at::kInt: return MPI_INT32_T;
    case at::kByte: return MPI_UINT8_T;
    default: throw std::runtime_error(std::string("MPI communicator: unsupported dtype ") + c10::toString(t.scalar_type()));
  }
}

MPI_Op MpiOp(ReduceOp op) {
  return op == ReduceOp::kSum || op == ReduceOp::kAvg ? MPI_SUM : op == ReduceOp::kMax ? MPI_MAX : MPI_MIN;
}

// MPI counts are ints: a larger tensor (a dataset list over 2 GiB, say) is refused by name rather
// than sent truncated.
int MpiCount(const at::Tensor& t, const std::string& name) {
  TORCH_CHECK(t.numel() <= std::numeric_limits<int>::max(), "MPI collective '", name, "': ", t.numel(),
              " elements are more than one MPI call carries (", std::numeric_limits<int>::max(), ")");
  return static_cast<int>(t.numel());
}

void Check(int rc, const char* what) {
  if (rc != MPI_SUCCESS) throw std::runtime_error(std::string(what) + " failed with MPI error " + std::to_string(rc));
}

class MpiCommunicator : public Communicator {
 public:
  explicit MpiCommunicator(double timeout_s) {
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &world_);
    worker_ = std::make_unique<CollectiveQueue>(timeout_s, rank_, [this](int64_t seq) { return board_.StallReport(seq); },
                                       /*drain_s=*/timeout_s);
  }
  ~MpiCommunicator() override { worker_.reset(); }
  int rank() const override { return rank_; }
  int world() const override { return world_; }
  std::string backend() const override { return "mpi"; }

  std::shared_ptr<CommWork> AllReduceAsync(at::Tensor t, ReduceOp op, const std::string& name) override {
    TORCH_CHECK(t.is_contiguous() && t.device().is_cpu(), "MPI all-reduce '", name, "' needs a contiguous CPU tensor");
    TORCH_CHECK(op != ReduceOp::kAvg || t.is_floating_point(), "all-reduce '", name, "': an average needs a floating-point tensor, got ",
                t.scalar_type());
    const int n = MpiCount(t, name);
    // MPI has no average: the sum, scaled on the communication thread before the work completes
    // (by the reciprocal, as the reducer did before the average moved here: same bits).
    const double scale = 1.0 / world_;
    return Submit([t, op, n, scale] {
      Check(MPI_Allreduce(MPI_IN_PLACE, t.data_ptr(), n, MpiType(t), MpiOp(op), MPI_COMM_WORLD), "MPI_Allreduce");
      if (op == ReduceOp::kAvg) t.mul_(scale);
    }, name);
  }
  std::shared_ptr<CommWork> BroadcastAsync(at::Tensor t, int root, const std::string& name) override {
    TORCH_CHECK(t.is_contiguous() && t.device().is_cpu(), "MPI broadcast '", name, "' needs a contiguous CPU tensor");
    const int n = MpiCount(t, name);
    return Submit([t, root, n] { Check(MPI_Bcast(t.data_ptr(), n, MpiType(t), root, MPI_COMM_WORLD), "MPI_Bcast"); }, name);
  }
  std::shared_ptr<CommWork> AllGatherAsync(at::Tensor in, at::Tensor out, const std::string& name) override {
    TORCH_CHECK(in.is_contiguous() && out.is_contiguous() && in.device().is_cpu() && out.device().is_cpu(),
                "MPI all-gather '", name, "' needs contiguous CPU tensors");
    TORCH_CHECK(out.numel() == in.numel() * world_, "all-gather '", name, "': output size mismatch");
    const int n = MpiCount(in, name);
    return Submit([in, out, n] {
      Check(MPI_Allgather(in.data_ptr(), n, MpiType(in), out.data_ptr(), n, MpiType(out), MPI_COMM_WORLD), "MPI_Allgather");
    }, name);
  }

 private:
  std::shared_ptr<CommWork> Submit(std::function<void()> fn, const std::string& name) {
    board_.Arrive(worker_->next_seq(), name);
    return std::make_shared<WorkHandle>(worker_.get(), worker_->Submit(std::move(fn), name));
  }

  int rank_ = 0, world_ = 1;
  ArrivalBoard board_;
  std::unique_ptr<CollectiveQueue> worker_;
};

}  // namespace

std::unique_ptr<Communicator> MakeMpiCommunicator(double stall_timeout_s) {
  return std::make_unique<MpiCommunicator>(stall_timeout_s);
}

}  // namespace evl
