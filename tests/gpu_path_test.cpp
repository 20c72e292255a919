// The GPU path's contracts, checked on a CPU machine: collectives routed by device (the whole
// trainer through the routing communicator, with backends that fail on a tensor of the wrong
// device), the one device rule, a model that moves as a whole, and a communication thread that
// does not hold up shutdown when a collective can no longer complete. Runs under mpirun -np 1.
#include <gtest/gtest.h>
#include <mpi.h>
#include <torch/torch.h>

#include <chrono>
#include <future>
#include <set>
#include <thread>

#include "../worker/comm/src/collective_queue.h"
#include "config.h"
#include "evl/communicator.h"
#include "evl/device_choice.h"
#include "evl/model.h"
#include "evl/trainer.h"
#include "test_util.h"
#include "tiny_model.h"

namespace evl::test {
namespace {

// A backend for one side of the routing: forwards to `inner` (or fails, when null) and fails the
// test if a tensor of the other side's device reaches it.
class DeviceCheckingCommunicator : public Communicator {
 public:
  DeviceCheckingCommunicator(std::unique_ptr<Communicator> inner, bool host_side, std::set<std::string>* seen)
      : inner_(std::move(inner)), host_side_(host_side), seen_(seen) {}
  int rank() const override { return 0; }
  int world() const override { return 1; }
  std::string backend() const override { return host_side_ ? "host-check" : "device-check"; }
  std::shared_ptr<CommWork> AllReduceAsync(at::Tensor t, ReduceOp op, const std::string& name) override {
    return Check(t, name).AllReduceAsync(t, op, name);
  }
  std::shared_ptr<CommWork> BroadcastAsync(at::Tensor t, int root, const std::string& name) override {
    return Check(t, name).BroadcastAsync(t, root, name);
  }
  std::shared_ptr<CommWork> AllGatherAsync(at::Tensor in, at::Tensor out, const std::string& name) override {
    Check(out, name);
    return Check(in, name).AllGatherAsync(in, out, name);
  }

 private:
  Communicator& Check(const at::Tensor& t, const std::string& name) {
    if (t.device().is_cpu() != host_side_ || !inner_)
      throw std::logic_error("collective '" + name + "' with a " + t.device().str() + " tensor reached the " +
                             backend() + " backend");
    seen_->insert(name);
    return *inner_;
  }
  std::unique_ptr<Communicator> inner_;
  bool host_side_;
  std::set<std::string>* seen_;
};

TEST(Routing, EveryCollectiveOfATrainingRunReachesTheBackendOfItsDevice) {
  const std::string dir = ScratchDir("routing_run");
  EvlConfig config = LoadEffectiveConfig("", {"train.num_steps=3", "train.batch_size=4", "train.print_freq=1",
                                              "train.eval_freq=3", "train.run_dir=" + dir, "data.synthetic.videos=16",
                                              "data.synthetic.frames=16", "train.device=CPU"});
  std::set<std::string> seen;
  auto comm = MakeRoutingCommunicator(
      std::make_unique<DeviceCheckingCommunicator>(MakeMpiCommunicator(60), true, &seen),
      std::make_unique<DeviceCheckingCommunicator>(nullptr, false, &seen));
  EXPECT_EQ(comm->backend(), "host-check+device-check");
  RankContext ctx;
  ctx.device = "cpu";
  ResolveDataPaths(&config, *comm);
  ASSERT_EQ(RunTraining(config, *comm, ctx), 0);
  for (const char* name : {"config check", "initial parameters", "grad bucket 0", "step metrics", "skipped videos"})
    EXPECT_TRUE(seen.count(name)) << name << " never reached the host backend";
}

TEST(Routing, ANonCpuTensorGoesToTheAcceleratorAndWithoutOneIsRefused) {
  std::set<std::string> seen;
  auto routed = MakeRoutingCommunicator(
      std::make_unique<DeviceCheckingCommunicator>(MakeMpiCommunicator(60), true, &seen),
      std::make_unique<DeviceCheckingCommunicator>(nullptr, false, &seen));
  // A meta tensor stands in for a CUDA one: not on the host, so the accelerator side gets it.
  auto meta = torch::empty({4}, torch::TensorOptions().device(torch::kMeta));
  try {
    routed->AllReduce(meta, ReduceOp::kSum, "device grads");
    FAIL() << "expected the device-check backend to take it";
  } catch (const std::logic_error& e) {
    EXPECT_NE(std::string(e.what()).find("reached the device-check backend"), std::string::npos) << e.what();
  }
  auto host_only = MakeRoutingCommunicator(MakeMpiCommunicator(60), nullptr);
  EXPECT_EQ(host_only->backend(), "mpi");
  try {
    host_only->AllReduce(meta, ReduceOp::kSum, "device grads");
    FAIL() << "expected a refusal";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("'device grads'"), std::string::npos) << e.what();
  }
  auto cpu = torch::ones({3});
  host_only->AllReduce(cpu, ReduceOp::kSum, "host");
  EXPECT_EQ(cpu.sum().item<float>(), 3.0f);
}

DeviceFacts Node(int gpus, int local_rank, std::vector<std::string> cvd) {
  DeviceFacts f;
  f.torch_built_with_cuda = true;
  f.visible_gpus = gpus;
  f.local_rank = local_rank;
  f.local_world = static_cast<int>(cvd.size());
  f.local_visible_devices = std::move(cvd);
  return f;
}

std::string Refusal(const DeviceFacts& f) {
  try {
    return "chose " + ChooseDevice(f);
  } catch (const std::runtime_error& e) {
    return e.what();
  }
}

TEST(DeviceRule, AllGpusVisibleEachLocalRankTakesItsOwn) {
  for (int r = 0; r < 4; ++r) EXPECT_EQ(ChooseDevice(Node(4, r, {kUnset, kUnset, kUnset, kUnset})), "cuda:" + std::to_string(r));
  EXPECT_EQ(ChooseDevice(Node(8, 1, {"0,1,2,3,4,5,6,7", "0,1,2,3,4,5,6,7"})), "cuda:1");
}

TEST(DeviceRule, OneGpuPerTaskIsDeviceZeroOnEveryRank) {
  // Slurm's per-task binding: every rank sees one GPU, each a different one.
  for (int r = 0; r < 4; ++r) EXPECT_EQ(ChooseDevice(Node(1, r, {"0", "1", "2", "3"})), "cuda:0");
  EXPECT_EQ(ChooseDevice(Node(2, 1, {"0,1", "2,3"})), "cuda:0");
}

TEST(DeviceRule, MoreRanksThanGpusIsRefused) {
  EXPECT_NE(Refusal(Node(1, 1, {kUnset, kUnset})).find("2 ranks on the node share 1 visible GPU"), std::string::npos);
  EXPECT_NE(Refusal(Node(2, 0, {"0,1", "0,1", "0,1"})).find("share 2 visible GPU(s) (CUDA_VISIBLE_DEVICES=0,1)"),
            std::string::npos);
  auto f = Node(4, 0, {"0", "1", "2", "3"});
  f.slurm_gpus_on_node = 2;
  EXPECT_NE(Refusal(f).find("SLURM_GPUS_ON_NODE=2"), std::string::npos);
}

TEST(DeviceRule, TwoRanksShareAGpuOnlyByOptInAndWithAnNcclThatCan) {
  auto f = Node(1, 1, {kUnset, kUnset});
  f.nccl_version = 23003;  // 2.30.3: the first with NCCL_MULTI_RANK_GPU_ENABLE
  EXPECT_NE(Refusal(f).find("EVL_ALLOW_SHARED_GPU=1 lets ranks share one with NCCL >= 2.30.3"), std::string::npos)
      << Refusal(f);
  f.shared_gpu_opt_in = true;
  EXPECT_EQ(ChooseDevice(f), "cuda:0");
  EXPECT_TRUE(RanksShareAGpu(f));
  f.local_rank = 0;
  EXPECT_EQ(ChooseDevice(f), "cuda:0");
  // The lent GPU machines' pip NCCL: refused, naming the version and the one that can.
  f.nccl_version = 22809;
  EXPECT_NE(Refusal(f).find("but NCCL 2.28.9 cannot run two ranks on one device (NCCL 2.30.3 and later can)"),
            std::string::npos) << Refusal(f);
  f.nccl_version = 0;
  EXPECT_NE(Refusal(f).find("but this evl has no NCCL"), std::string::npos) << Refusal(f);
  // Four ranks on two GPUs, opted in: two per device.
  for (int r = 0; r < 4; ++r) {
    auto g = Node(2, r, {kUnset, kUnset, kUnset, kUnset});
    g.shared_gpu_opt_in = true;
    g.nccl_version = 23007;
    EXPECT_EQ(ChooseDevice(g), "cuda:" + std::to_string(r % 2));
  }
  // Enough GPUs, or one bound to each task: nothing is shared, whatever the opt-in says.
  auto own = Node(1, 0, {"0", "1"});
  own.shared_gpu_opt_in = true;
  EXPECT_FALSE(RanksShareAGpu(own));
  auto enough = Node(2, 0, {kUnset, kUnset});
  enough.shared_gpu_opt_in = true;
  EXPECT_FALSE(RanksShareAGpu(enough));
}

TEST(DeviceRule, RequestedGpusWithoutCudaAreRefusedSayingWhy) {
  DeviceFacts f;  // a CPU-only LibTorch
  EXPECT_EQ(ChooseDevice(f), "cpu");
  f.gpu_request = "SLURM_GPUS_ON_NODE=4";
  EXPECT_NE(Refusal(f).find("GPUs were requested (SLURM_GPUS_ON_NODE=4), but this evl's LibTorch was built without CUDA"),
            std::string::npos) << Refusal(f);
  f.gpu_request.clear();
  f.request = DeviceRequest::kCuda;
  f.torch_built_with_cuda = true;
  EXPECT_NE(Refusal(f).find("train.device CUDA, but LibTorch sees no CUDA device"), std::string::npos) << Refusal(f);
  f.request = DeviceRequest::kCpu;
  f.visible_gpus = 8;
  EXPECT_EQ(ChooseDevice(f), "cpu");
}

TEST(Model, ToMovesTheFrozenBackboneToo) {
  EVLTransformer model(TinyEvlOptions());
  auto every_tensor = [&] {
    std::vector<torch::Tensor> all;
    for (auto& p : model->backbone()->parameters()) all.push_back(p);
    for (auto& b : model->backbone()->buffers()) all.push_back(b);
    for (auto& p : model->parameters()) all.push_back(p);
    return all;
  };
  model->to(torch::kDouble);
  for (auto& t : every_tensor()) EXPECT_EQ(t.scalar_type(), torch::kDouble);
  model->to(torch::Device(torch::kCPU), torch::kFloat);
  for (auto& t : every_tensor()) EXPECT_EQ(t.scalar_type(), torch::kFloat);
}

TEST(CollectiveQueue, ShutdownDoesNotWaitForACollectiveThatCannotComplete) {
  std::promise<void> release, finished;
  auto released = release.get_future().share();
  auto done = finished.get_future();
  // The queue is created and destroyed on a thread of its own, so that a destructor that waited
  // for the stuck collective fails this test within a bound instead of hanging it.
  std::promise<void> destroyed;
  auto destroyed_future = destroyed.get_future();
  std::thread owner([&] {
    {
      CollectiveQueue queue(60, 0, [](int64_t) { return std::string(); }, /*drain_s=*/0);
      queue.Submit([released, &finished] {
        released.wait();  // a collective whose peer died: never completes on its own
        finished.set_value();
      }, "stuck all-reduce");
    }
    destroyed.set_value();
  });
  const bool returned = destroyed_future.wait_for(std::chrono::seconds(60)) == std::future_status::ready;
  EXPECT_TRUE(returned) << "the queue's destructor waited for a collective that cannot complete";
  EXPECT_EQ(done.wait_for(std::chrono::seconds(0)), std::future_status::timeout)
      << "the stuck collective finished before it was released";
  release.set_value();
  done.wait();
  owner.join();
}

}  // namespace
}  // namespace evl::test

int main(int argc, char** argv) {
  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
  ::testing::InitGoogleTest(&argc, argv);
  const int failed = RUN_ALL_TESTS();
  MPI_Finalize();
  return failed;
}
