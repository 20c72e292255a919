// Routes each collective to the backend that can carry its tensor: NCCL only takes CUDA memory and
// MPI (as built here) only host memory, so a trainer on a GPU needs both at once (its gradients are
// on the device, its metrics and stop flags on the host).
#include "evl/communicator.h"

#include <stdexcept>

namespace evl {
namespace {

class RoutingCommunicator : public Communicator {
 public:
  RoutingCommunicator(std::unique_ptr<Communicator> cpu, std::unique_ptr<Communicator> accelerator)
      : cpu_(std::move(cpu)), accelerator_(std::move(accelerator)) {
    if (!cpu_) throw std::invalid_argument("routing communicator: a CPU backend is required");
    if (accelerator_ && (accelerator_->rank() != cpu_->rank() || accelerator_->world() != cpu_->world()))
      throw std::invalid_argument("routing communicator: the " + accelerator_->backend() + " backend has rank " +
                                  std::to_string(accelerator_->rank()) + "/" + std::to_string(accelerator_->world()) +
                                  ", the " + cpu_->backend() + " backend " + std::to_string(cpu_->rank()) + "/" +
                                  std::to_string(cpu_->world()));
  }
  int rank() const override { return cpu_->rank(); }
  int world() const override { return cpu_->world(); }
  std::string backend() const override {
    return accelerator_ ? cpu_->backend() + "+" + accelerator_->backend() : cpu_->backend();
  }

  std::shared_ptr<CommWork> AllReduceAsync(at::Tensor t, ReduceOp op, const std::string& name) override {
    return For(t, name).AllReduceAsync(t, op, name);
  }
  std::shared_ptr<CommWork> BroadcastAsync(at::Tensor t, int root, const std::string& name) override {
    return For(t, name).BroadcastAsync(t, root, name);
  }
  std::shared_ptr<CommWork> AllGatherAsync(at::Tensor in, at::Tensor out, const std::string& name) override {
    if (in.device() != out.device())
      throw std::invalid_argument("all-gather '" + name + "': input on " + in.device().str() + ", output on " +
                                  out.device().str());
    return For(in, name).AllGatherAsync(in, out, name);
  }

 private:
  Communicator& For(const at::Tensor& t, const std::string& name) {
    if (t.device().is_cpu()) return *cpu_;
    if (!accelerator_)
      throw std::invalid_argument("collective '" + name + "' has a tensor on " + t.device().str() +
                                  " but this job has no communicator for that device (CPU job)");
    return *accelerator_;
  }

  std::unique_ptr<Communicator> cpu_, accelerator_;
};

}  // namespace

std::unique_ptr<Communicator> MakeRoutingCommunicator(std::unique_ptr<Communicator> cpu,
                                                      std::unique_ptr<Communicator> accelerator) {
  return std::make_unique<RoutingCommunicator>(std::move(cpu), std::move(accelerator));
}

}  // namespace evl
