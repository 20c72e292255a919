// A communicator for one rank alone, in-process, for the tests of the pieces that take one: every
// collective is complete at once and leaves what a world of one would (AllGather copies `in` to
// `out`); it counts the all-reduces asked of it.
#pragma once

#include <torch/torch.h>

#include <memory>
#include <string>

#include "evl/communicator.h"

namespace evl::test {

class LoneCommunicator : public Communicator {
 public:
  struct Done : CommWork {
    void Wait() override {}
  };
  int rank() const override { return 0; }
  int world() const override { return 1; }
  std::string backend() const override { return "lone"; }
  std::shared_ptr<CommWork> AllReduceAsync(at::Tensor, ReduceOp, const std::string&) override {
    ++all_reduces;
    return std::make_shared<Done>();
  }
  std::shared_ptr<CommWork> BroadcastAsync(at::Tensor, int, const std::string&) override {
    return std::make_shared<Done>();
  }
  std::shared_ptr<CommWork> AllGatherAsync(at::Tensor in, at::Tensor out, const std::string&) override {
    out.view(-1).copy_(in.reshape(-1));
    return std::make_shared<Done>();
  }
  int all_reduces = 0;
};

}  // namespace evl::test
