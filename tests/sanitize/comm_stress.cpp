// Under ThreadSanitizer on `mpirun -np 2`: the MPI communicator's queue thread serving collectives
// asked for by several threads at once, the bucketed gradient all-reduce launched from autograd
// hooks while backward runs, bounded waits, and the arrival board written by every collective.
// The results are checked too: a race that changes a number fails even without a report.
#include <mpi.h>
#include <torch/torch.h>

#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <thread>
#include <vector>

#include "evl/communicator.h"
#include "evl/grad_sync.h"

int main(int argc, char** argv) {
  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
  int failures = 0;
  {
    auto comm = evl::MakeMpiCommunicator(120);
    const int world = comm->world();
    // Collectives asked for by three threads in turn (the order in which they are issued must be
    // the same on every rank; the turn fixes it), each thread waiting for its own results while
    // the others issue theirs.
    std::mutex mu;
    std::condition_variable cv;
    int turn = 0;
    std::vector<std::thread> threads;
    std::vector<int> bad(3, 0);
    for (int t = 0; t < 3; ++t) {
      threads.emplace_back([&, t] {
        for (int i = 0; i < 20; ++i) {
          auto x = torch::full({1000}, static_cast<float>(comm->rank() + t + i));
          std::shared_ptr<evl::CommWork> work;
          {
            std::unique_lock<std::mutex> l(mu);
            cv.wait(l, [&] { return turn % 3 == t; });
            work = comm->AllReduceAsync(x, evl::ReduceOp::kSum, "thread " + std::to_string(t));
            ++turn;
          }
          cv.notify_all();
          work->WaitWithin(120);
          const float want = static_cast<float>(world * (t + i) + world * (world - 1) / 2);
          if (x[0].item<float>() != want) ++bad[t];
        }
      });
    }
    for (auto& th : threads) th.join();
    for (int b : bad) failures += b;

    torch::manual_seed(0);
    torch::nn::Sequential net(torch::nn::Linear(64, 128), torch::nn::Tanh(), torch::nn::Linear(128, 8));
    std::vector<at::Tensor> params = net->parameters();
    for (int round = 0; round < 3; ++round) {
      evl::GradientReducer reducer(params, comm.get(), 0.004);  // several buckets
      for (int step = 0; step < 4; ++step) {
        for (auto& p : params) p.mutable_grad() = at::Tensor();
        reducer.Prepare();
        net->forward(torch::randn({16, 64}) + comm->rank()).pow(2).mean().backward();
        reducer.Finish();
      }
    }  // reducers destroyed with their hooks between rounds
    auto b = torch::full({4}, static_cast<double>(comm->rank()));
    comm->Broadcast(b, 1, "broadcast");
    if (b[0].item<double>() != 1.0) ++failures;
  }
  int any = 0;
  MPI_Allreduce(&failures, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  MPI_Finalize();
  std::printf("comm_stress: %s\n", any ? "WRONG RESULTS" : "ok");
  return any ? 1 : 0;
}
