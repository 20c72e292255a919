// Runs under `mpirun -np 2`: the communicator's collectives and the bucketed, overlapped gradient
// all-reduce against a plain all-reduce of every gradient.
#include <gtest/gtest.h>
#include <torch/cuda.h>
#include <mpi.h>
#include <torch/torch.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "arrival_board.h"
#include "evl/communicator.h"
#include "evl/nccl_info.h"
#include "evl/grad_sync.h"

namespace evl {
namespace {

std::unique_ptr<Communicator> g_comm;

TEST(Communicator, CollectivesAgree) {
  auto& c = *g_comm;
  ASSERT_EQ(c.world(), 2);
  auto t = torch::full({5}, static_cast<float>(c.rank() + 1));
  c.AllReduce(t, ReduceOp::kSum, "sum");
  EXPECT_TRUE(torch::equal(t, torch::full({5}, 3.0f)));
  auto b = torch::full({3}, static_cast<double>(c.rank() * 10));
  c.Broadcast(b, 1, "bcast");
  EXPECT_TRUE(torch::equal(b, torch::full({3}, 10.0, torch::kDouble)));
  EXPECT_EQ(c.BroadcastString(c.rank() == 0 ? "from zero" : "other", 0, "str"), "from zero");
  auto out = torch::zeros({4}, torch::kLong);
  c.AllGather(torch::full({2}, static_cast<int64_t>(c.rank()), torch::kLong), out, "gather");
  EXPECT_TRUE(torch::equal(out, torch::tensor({0L, 0L, 1L, 1L})));
}

TEST(Communicator, AnAverageIsTheSumOverTheWorldAndOnlyForFloatingPoint) {
  auto& c = *g_comm;
  auto t = torch::full({4}, static_cast<float>(c.rank() + 1));
  c.AllReduce(t, ReduceOp::kAvg, "average");
  EXPECT_TRUE(torch::equal(t, torch::full({4}, 1.5f))) << t;
  auto i = torch::ones({2}, torch::kLong);
  try {
    c.AllReduce(i, ReduceOp::kAvg, "integer average");
    ADD_FAILURE() << "an integer average was accepted";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("'integer average': an average needs a floating-point tensor"), std::string::npos)
        << e.what();
  }
}

// MPI counts are ints: a tensor of 2^31 elements or more used to be sent with its count cast to a
// negative int. It is refused by name on the calling thread, before any rank enters MPI.
TEST(Communicator, ATensorLargerThanAnMpiCountIsRefusedByName) {
  auto& c = *g_comm;
  const auto huge = torch::empty({int64_t{1} << 31}, torch::kUInt8);  // not touched: no memory used
  try {
    c.Broadcast(huge, 0, "the dataset list");
    ADD_FAILURE() << "a 2 GiB broadcast was sent";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("MPI collective 'the dataset list': 2147483648 elements"), std::string::npos)
        << e.what();
  }
  EXPECT_EQ(c.BroadcastString(c.rank() == 0 ? "still in step" : "", 0, "after"), "still in step");
}

TEST(GradientReducer, BucketedOverlappedEqualsPlainAllReduce) {
  auto& c = *g_comm;
  torch::manual_seed(0);  // same model on both ranks
  torch::nn::Sequential net(torch::nn::Linear(16, 32), torch::nn::Tanh(), torch::nn::Linear(32, 32), torch::nn::Tanh(),
                            torch::nn::Linear(32, 4));
  std::vector<torch::Tensor> params = net->parameters();
  // Tiny buckets so there are several, and two micro-batches so accumulation is exercised.
  GradientReducer reducer(params, &c, 0.002);
  ASSERT_GT(reducer.num_buckets(), 2);
  torch::manual_seed(100 + c.rank());  // different data per rank
  auto x1 = torch::randn({8, 16}), x2 = torch::randn({8, 16});
  auto plain = [&] {
    for (auto& p : params) p.mutable_grad() = torch::Tensor();
    net->forward(x1).pow(2).mean().backward();
    net->forward(x2).pow(2).mean().backward();
    std::vector<torch::Tensor> g;
    for (auto& p : params) {
      auto t = p.grad().clone();
      c.AllReduce(t, ReduceOp::kSum, "plain");
      g.push_back(t / c.world());
    }
    return g;
  }();
  for (auto& p : params) p.mutable_grad() = torch::Tensor();
  net->forward(x1).pow(2).mean().backward();
  reducer.Prepare();
  net->forward(x2).pow(2).mean().backward();
  reducer.Finish();
  for (size_t i = 0; i < params.size(); ++i)
    EXPECT_TRUE(torch::allclose(params[i].grad(), plain[i], 1e-6, 1e-7)) << "param " << i;
  // Buckets launched in the same order on both ranks.
  std::vector<int64_t> order(reducer.launch_order().begin(), reducer.launch_order().end());
  auto mine = torch::tensor(order, torch::kLong);
  auto both = torch::zeros({2 * mine.numel()}, torch::kLong);
  c.AllGather(mine, both, "orders");
  EXPECT_TRUE(torch::equal(both.narrow(0, 0, mine.numel()), both.narrow(0, mine.numel(), mine.numel())));
}

// Rank 0 waits without any MPI call (so it progresses nothing) for a file rank 1 writes after
// many arrivals. A blocking MPI_Send stops once the transport's buffers towards a non-receiving
// rank 0 are full; the arrival board must not (it is how a hung rank 0 gets named, not joined).
TEST(ArrivalBoard, ArrivingNeverWaitsForRankZero) {
  ArrivalBoard board;
  const int rank = g_comm->rank();
  const std::string flag = "/tmp/evl_arrival_board_" + std::to_string(getppid()) + ".done";
  constexpr int64_t kArrivals = 50000;
  bool seen = true;
  if (rank == 1) {
    for (int64_t seq = 0; seq < kArrivals; ++seq) board.Arrive(seq, "step");
    std::ofstream(flag) << "done\n";
  } else {
    // Generous: rank 1 needs well under a second; only a blocked Arrive lets this run out (with
    // MPI_Send in Arrive this test fails here, checked).
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(45);
    while (!std::filesystem::exists(flag) && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    seen = std::filesystem::exists(flag);
    EXPECT_TRUE(seen) << "rank 1 did not get through " << kArrivals << " arrivals while rank 0 was busy";
  }
  // Rank 0 reaches the same collectives; then every rank has arrived, and the report says so once
  // rank 0 has drained what rank 1 sent.
  for (int64_t seq = 0; seq < (rank == 0 ? kArrivals : 0); ++seq) board.Arrive(seq, "step");
  std::string report;
  for (int i = 0; i < 6000 && rank == 0; ++i) {
    report = board.StallReport(kArrivals - 1);
    if (report.find("every rank arrived") != std::string::npos) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (rank == 0) EXPECT_NE(report.find("every rank arrived"), std::string::npos) << report;
  MPI_Barrier(MPI_COMM_WORLD);
  if (rank == 0) std::filesystem::remove(flag);
}

TEST(ArrivalBoard, TheStallReportNamesTheRankThatDidNotArriveAndWhereItWasLastSeen) {
  ArrivalBoard board;
  const int rank = g_comm->rank();
  for (int64_t seq = 0; seq < 5; ++seq) board.Arrive(seq, "collective-" + std::to_string(seq));
  if (rank == 0) board.Arrive(5, "collective-5");
  std::string report;
  for (int i = 0; i < 6000 && rank == 0; ++i) {  // until rank 1's five arrivals are drained
    report = board.StallReport(5);
    if (report.find("#4") != std::string::npos) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (rank == 0) EXPECT_EQ(report, "ranks not arrived: 1 (last at #4 'collective-4')");
  else EXPECT_EQ(board.StallReport(5), "rank 0 names the ranks that did not arrive");
  MPI_Barrier(MPI_COMM_WORLD);
}

// What this machine is decides what must happen: no NCCL in the build or no GPU -> a clear refusal;
// NCCL and a GPU -> a working communicator (checked on the GPU machine by bench/gpu_check.sh).
TEST(NcclCommunicator, FailsClearlyWithoutAGpu) {
  const bool usable = NcclBuilt() && torch::cuda::is_available();
  try {
    auto nccl = MakeNcclCommunicator(10, 0);
    EXPECT_TRUE(usable) << "an NCCL communicator was made where NCCL or a GPU is missing";
    EXPECT_EQ(nccl->world(), 2);
  } catch (const std::runtime_error& e) {
    EXPECT_FALSE(usable) << "refused though NCCL and a GPU are there: " << e.what();
    const std::string msg = e.what();
    EXPECT_NE(msg.find(NcclBuilt() ? "no CUDA device" : "built without NCCL"), std::string::npos) << msg;
  }
}

}  // namespace
}  // namespace evl

int main(int argc, char** argv) {
  int provided;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
  ::testing::InitGoogleTest(&argc, argv);
  evl::g_comm = evl::MakeMpiCommunicator(60);
  int failed = RUN_ALL_TESTS(), any = 0;
  MPI_Allreduce(&failed, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  evl::g_comm.reset();
  MPI_Finalize();
  return any;
}
