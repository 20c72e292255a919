// The MPI backend's collective queue: jobs run in FIFO order on one communication thread, so that
// collectives are issued in the same order on every rank whichever thread asked. Internal to
// evl_comm; a header of its own so that its shutdown can be tested without MPI.
#pragma once

#include <glog/logging.h>
#include <mpi.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>

#include "evl/abort.h"

namespace evl {

// Runs queued jobs in FIFO order on one thread; each job's completion is observable with a
// bounded wait. The queue state is shared with the thread, so that a destructor facing a job stuck
// in MPI (another rank died) can leave the thread behind instead of joining it forever.
class CollectiveQueue {
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
  // it returns what is known about the other ranks. `drain_s` bounds how long the destructor
  // waits for queued collectives to finish.
  CollectiveQueue(double timeout_s, int rank, std::function<std::string(int64_t seq)> on_stall, double drain_s)
      : timeout_s_(timeout_s), drain_s_(drain_s), rank_(rank), on_stall_(std::move(on_stall)),
        core_(std::make_shared<Core>()) {
    thread_ = std::thread([core = core_] { Loop(*core); });
  }
  ~CollectiveQueue() {
    std::unique_lock<std::mutex> l(core_->mu);
    core_->stop = true;
    core_->cv.notify_all();
    const bool idle = core_->cv.wait_for(l, std::chrono::duration<double>(drain_s_),
                                         [&] { return core_->queue.empty() && !core_->busy; });
    l.unlock();
    if (idle) {
      thread_.join();
    } else {
      // Joining would hang the process on a collective that can no longer complete; the thread
      // keeps the queue alive through its own reference and dies with the process.
      LOG(WARNING) << "rank " << rank_ << ": leaving a communication thread stuck in '" << core_->current
                   << "' behind at shutdown";
      thread_.detach();
    }
  }
  CollectiveQueue(const CollectiveQueue&) = delete;
  CollectiveQueue& operator=(const CollectiveQueue&) = delete;

  int64_t next_seq() {
    std::lock_guard<std::mutex> l(core_->mu);
    return core_->next_seq;
  }

  std::shared_ptr<Job> Submit(std::function<void()> fn, const std::string& name) {
    auto job = std::make_shared<Job>();
    job->fn = std::move(fn);
    job->name = name;
    {
      std::lock_guard<std::mutex> l(core_->mu);
      job->seq = core_->next_seq++;
      core_->queue.push_back(job);
    }
    core_->cv.notify_all();
    return job;
  }

  // timeout_s > 0: this wait's own deadline instead of the queue's stall timeout.
  void Wait(const std::shared_ptr<Job>& job, double timeout_s = 0) {
    if (timeout_s <= 0) timeout_s = timeout_s_;
    std::unique_lock<std::mutex> l(job->mu);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
    if (!job->cv.wait_until(l, deadline, [&] { return job->done; })) {
      // Not through glog (see evl/abort.h): the report goes out with write(2) once the watchdog runs.
      AbortJob(kExitStalled, [&] {
        return "rank " + std::to_string(rank_) + ": collective #" + std::to_string(job->seq) + " '" + job->name +
               "' did not complete in " + std::to_string(static_cast<int64_t>(timeout_s)) +
               " s: another rank stalled, died or took a different path; " + on_stall_(job->seq) + "; aborting the job";
      });
    }
    if (!job->error.empty()) throw std::runtime_error("collective '" + job->name + "': " + job->error);
  }

 private:
  struct Core {
    std::mutex mu;
    std::condition_variable cv;  // queue changes, stop, and the thread going idle
    std::deque<std::shared_ptr<Job>> queue;
    int64_t next_seq = 0;
    bool stop = false, busy = false;
    std::string current;
  };

  static void Loop(Core& core) {
    while (true) {
      std::shared_ptr<Job> job;
      {
        std::unique_lock<std::mutex> l(core.mu);
        core.busy = false;
        core.cv.notify_all();
        core.cv.wait(l, [&] { return core.stop || !core.queue.empty(); });
        if (core.queue.empty()) return;
        job = core.queue.front();
        core.queue.pop_front();
        core.busy = true;
        core.current = job->name;
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

  double timeout_s_, drain_s_;
  int rank_;
  std::function<std::string(int64_t)> on_stall_;
  std::shared_ptr<Core> core_;
  std::thread thread_;
};

}  // namespace evl
