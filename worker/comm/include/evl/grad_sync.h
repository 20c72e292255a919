// DDP-style gradient synchronisation: trainable parameters are assigned to fixed-order buckets
// (reverse registration order, ~bucket_mb each); during the backward of the last micro-batch each
// parameter's gradient hook copies it into its bucket, and a bucket whose gradients are all in is
// all-reduced asynchronously — in bucket order on every rank — while backward goes on. Finish()
// waits for the averaging all-reduces (ReduceOp::kAvg) and writes the result into .grad.
#pragma once

#include <memory>
#include <vector>

#include <ATen/core/Tensor.h>

#include "evl/communicator.h"

namespace evl {

class GradientReducer {
 public:
  GradientReducer(std::vector<at::Tensor> params, Communicator* comm, double bucket_mb);
  // Removes its gradient hooks from the parameters.
  ~GradientReducer();
  GradientReducer(const GradientReducer&) = delete;
  GradientReducer& operator=(const GradientReducer&) = delete;

  // Arms the hooks for the next backward (the last micro-batch of a step).
  void Prepare();
  // Waits for every bucket, averages, writes .grad. Returns seconds spent waiting here (the
  // communication that backward did not hide).
  double Finish();

  int num_buckets() const { return static_cast<int>(buckets_.size()); }
  // Bytes all-reduced per step (the scaling model's gradient size, bench/scaling_model.py).
  int64_t bytes() const {
    int64_t n = 0;
    for (const auto& b : buckets_) n += static_cast<int64_t>(b.flat.nbytes());
    return n;
  }
  // Bucket indices in the order their all-reduce was launched during the last step.
  const std::vector<int>& launch_order() const { return launch_order_; }

 private:
  struct Bucket {
    std::vector<int> params;
    std::vector<int64_t> offsets;
    at::Tensor flat;
    int pending = 0;
    bool launched = false;
    std::shared_ptr<CommWork> work;
  };
  void OnGrad(int param, const at::Tensor& grad);
  void LaunchReady();

  std::vector<at::Tensor> params_;
  std::vector<unsigned> hooks_;  // register_hook's handle per parameter
  Communicator* comm_;
  std::vector<Bucket> buckets_;
  std::vector<int> bucket_of_, slot_of_;
  std::vector<bool> seen_;
  bool armed_ = false;
  size_t next_launch_ = 0;
  std::vector<int> launch_order_;
};

}  // namespace evl
