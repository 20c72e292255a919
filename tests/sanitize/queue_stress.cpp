// Under ThreadSanitizer: the MPI communicator's collective queue (worker/comm/src/collective_queue.h) with
// plain jobs instead of MPI calls: four threads submitting and waiting at once (with their own
// deadlines), jobs that throw, and a queue destroyed with work still queued. This is evl's part of
// the communicator's threading; the MPI calls themselves are OpenMPI's (see run_sanitized.sh).
#include <atomic>
#include <cstdio>
#include <stdexcept>
#include <thread>
#include <vector>

#include "collective_queue.h"

int main() {
  int failures = 0;
  for (int round = 0; round < 3; ++round) {
    // Declared before the queue: the queue's destructor still runs the jobs left queued, and they
    // write here (declared after it, this was a use after free that ThreadSanitizer reported).
    std::vector<int64_t> results(4 * 200, -1);  // each job writes its own slot; read after its wait
    evl::CollectiveQueue queue(120, 0, [](int64_t) { return std::string("no report"); }, 60);
    std::atomic<int> errors{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
      threads.emplace_back([&, t] {
        for (int i = 0; i < 200; ++i) {
          const int slot = t * 200 + i;
          auto job = queue.Submit(
              [&results, slot] {
                if (slot % 97 == 0) throw std::runtime_error("job " + std::to_string(slot) + " failed");
                results[slot] = static_cast<int64_t>(slot) * slot;
              },
              "job " + std::to_string(slot));
          try {
            queue.Wait(job, i % 2 ? 60 : 0);
            if (results[slot] != static_cast<int64_t>(slot) * slot) ++errors;
          } catch (const std::runtime_error&) {
            if (slot % 97 != 0) ++errors;
          }
        }
      });
    }
    for (auto& th : threads) th.join();
    failures += errors;
    for (int i = 0; i < 50; ++i) queue.Submit([&results, i] { results[i] = 0; }, "left queued");
  }  // destroyed with jobs queued: drained before the thread is joined
  std::printf("queue_stress: %s\n", failures ? "WRONG RESULTS" : "ok");
  return failures ? 1 : 0;
}
