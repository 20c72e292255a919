#include "evl/abort.h"

#include <glog/logging.h>
#include <mpi.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>

namespace evl {

void AbortWithin(double grace_s, int status, const std::function<void()>& abort) {
  std::thread([grace_s, status] {
    std::this_thread::sleep_for(std::chrono::duration<double>(grace_s));
    std::fprintf(stderr, "evl: the job abort did not end this process within %.0f s (a peer unreachable?); "
                         "exiting with status %d\n", grace_s, status);
    google::FlushLogFiles(google::GLOG_INFO);
    std::_Exit(status);
  }).detach();
  abort();
  google::FlushLogFiles(google::GLOG_INFO);
  std::_Exit(status);
}

void AbortJob(int status) {
  AbortWithin(10.0, status, [status] { MPI_Abort(MPI_COMM_WORLD, status); });
}

}  // namespace evl
