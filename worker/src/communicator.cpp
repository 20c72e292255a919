#include "evl/communicator.h"

#include "arrival_board.h"

#include <glog/logging.h>
#include <mpi.h>
#include <torch/torch.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>

namespace evl {

std::string Communicator::BroadcastString(const std::string& s, int root, const std::string& name) {
  auto len = torch::tensor({static_cast<int64_t>(s.size())}, torch::kLong);
  Broadcast(len, root, name + ".length");
  auto bytes = torch::zeros({len.item<int64_t>()}, torch::kUInt8);
  if (rank() == root && !s.empty()) std::memcpy(bytes.data_ptr(), s.data(), s.size());
  Broadcast(bytes, root, name);
  return std::string(reinterpret_cast<const char*>(bytes.data_ptr()), bytes.numel());
}

namespace {

// Runs queued jobs in FIFO order on one thread; each job's completion is observable with a
// bounded wait.
class Worker {
 public:
  struct Job {
    std::function<void()> fn;
    std::string name;
    int64_t seq = 0;
    bool done = false;
    std::string error;
    std::mutex mu;
    std::condition_variable cv;
  };

  // `on_stall` runs on the waiting thread when a collective times out, before the job is aborted:
  // it returns what is known about the other ranks.
  Worker(double timeout_s, int rank, std::function<std::string(int64_t seq)> on_stall)
      : timeout_s_(timeout_s), rank_(rank), on_stall_(std::move(on_stall)), thread_([this] { Loop(); }) {}
  ~Worker() {
    {
      std::lock_guard<std::mutex> l(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }

  int64_t next_seq() {
    std::lock_guard<std::mutex> l(mu_);
    return next_seq_;
  }

  std::shared_ptr<Job> Submit(std::function<void()> fn, const std::string& name) {
    auto job = std::make_shared<Job>();
    job->fn = std::move(fn);
    job->name = name;
    {
      std::lock_guard<std::mutex> l(mu_);
      job->seq = next_seq_++;
      queue_.push_back(job);
    }
    cv_.notify_all();
    return job;
  }

  void Wait(const std::shared_ptr<Job>& job) {
    std::unique_lock<std::mutex> l(job->mu);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s_);
    if (!job->cv.wait_until(l, deadline, [&] { return job->done; })) {
      LOG(ERROR) << "rank " << rank_ << ": collective #" << job->seq << " '" << job->name << "' did not complete in "
                 << timeout_s_ << " s: another rank stalled, died or took a different path; " << on_stall_(job->seq)
                 << "; aborting the job";
      google::FlushLogFiles(google::GLOG_INFO);
      MPI_Abort(MPI_COMM_WORLD, 3);
    }
    if (!job->error.empty()) throw std::runtime_error("collective '" + job->name + "': " + job->error);
  }

 private:
  void Loop() {
    while (true) {
      std::shared_ptr<Job> job;
      {
        std::unique_lock<std::mutex> l(mu_);
        cv_.wait(l, [&] { return stop_ || !queue_.empty(); });
        if (queue_.empty()) return;
        job = queue_.front();
        queue_.pop_front();
      }
      try {
        job->fn();
      } catch (const std::exception& e) {
        job->error = e.what();
      }
      {
        std::lock_guard<std::mutex> l(job->mu);
        job->done = true;
      }
      job->cv.notify_all();
    }
  }

  double timeout_s_;
  int rank_;
  std::function<std::string(int64_t)> on_stall_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<Job>> queue_;
  int64_t next_seq_ = 0;
  bool stop_ = false;
  std::thread thread_;
};

class WorkHandle : public CommWork {
 public:
  WorkHandle(Worker* w, std::shared_ptr<Worker::Job> j) : worker_(w), job_(std::move(j)) {}
  void Wait() override { worker_->Wait(job_); }

 private:
  Worker* worker_;
  std::shared_ptr<Worker::Job> job_;
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

MPI_Op MpiOp(ReduceOp op) { return op == ReduceOp::kSum ? MPI_SUM : op == ReduceOp::kMax ? MPI_MAX : MPI_MIN; }

void Check(int rc, const char* what) {
  if (rc != MPI_SUCCESS) throw std::runtime_error(std::string(what) + " failed with MPI error " + std::to_string(rc));
}

class MpiCommunicator : public Communicator {
 public:
  explicit MpiCommunicator(double timeout_s) {
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &world_);
    worker_ = std::make_unique<Worker>(timeout_s, rank_, [this](int64_t seq) { return board_.StallReport(seq); });
  }
  ~MpiCommunicator() override { worker_.reset(); }
  int rank() const override { return rank_; }
  int world() const override { return world_; }
  std::string backend() const override { return "mpi"; }

  std::shared_ptr<CommWork> AllReduceAsync(at::Tensor t, ReduceOp op, const std::string& name) override {
    TORCH_CHECK(t.is_contiguous() && t.device().is_cpu(), "MPI all-reduce '", name, "' needs a contiguous CPU tensor");
    return Submit([t, op] { Check(MPI_Allreduce(MPI_IN_PLACE, t.data_ptr(), static_cast<int>(t.numel()), MpiType(t), MpiOp(op), MPI_COMM_WORLD), "MPI_Allreduce"); }, name);
  }
  std::shared_ptr<CommWork> BroadcastAsync(at::Tensor t, int root, const std::string& name) override {
    TORCH_CHECK(t.is_contiguous() && t.device().is_cpu(), "MPI broadcast '", name, "' needs a contiguous CPU tensor");
    return Submit([t, root] { Check(MPI_Bcast(t.data_ptr(), static_cast<int>(t.numel()), MpiType(t), root, MPI_COMM_WORLD), "MPI_Bcast"); }, name);
  }
  std::shared_ptr<CommWork> AllGatherAsync(at::Tensor in, at::Tensor out, const std::string& name) override {
    TORCH_CHECK(out.numel() == in.numel() * world_, "all-gather '", name, "': output size mismatch");
    return Submit([in, out] {
      Check(MPI_Allgather(in.data_ptr(), static_cast<int>(in.numel()), MpiType(in), out.data_ptr(),
                          static_cast<int>(in.numel()), MpiType(out), MPI_COMM_WORLD), "MPI_Allgather");
    }, name);
  }

 private:
  std::shared_ptr<CommWork> Submit(std::function<void()> fn, const std::string& name) {
    board_.Arrive(worker_->next_seq(), name);
    return std::make_shared<WorkHandle>(worker_.get(), worker_->Submit(std::move(fn), name));
  }

  int rank_ = 0, world_ = 1;
  ArrivalBoard board_;
  std::unique_ptr<Worker> worker_;
};

}  // namespace

std::unique_ptr<Communicator> MakeMpiCommunicator(double stall_timeout_s) {
  return std::make_unique<MpiCommunicator>(stall_timeout_s);
}

}  // namespace evl
