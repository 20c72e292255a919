// Ending the whole job from one rank, within a bounded time whatever MPI does. MPI_Abort has to
// reach the other ranks' daemons; with a node's link down it waits for them indefinitely (measured:
// 120 s and counting, until the link came back), which on a cluster burns the allocation until its
// time limit. A rank that has decided to abort therefore also ends itself after a grace period;
// the other side gives up on its own stall deadline.
#pragma once

#include <functional>

namespace evl {

// Calls `abort` (which should not return) and, if the process still runs `grace_s` later — or
// `abort` returns — ends it with `status` (std::_Exit: no destructors, no flushing but glog's).
[[noreturn]] void AbortWithin(double grace_s, int status, const std::function<void()>& abort);

// MPI_Abort(MPI_COMM_WORLD, status), bounded by AbortWithin (5 s: MPI_Abort normally ends a job,
// other nodes included, in about 2.5 s). Under mpirun, the node's Open MPI daemon is stopped too if
// it is still there after the grace period (cut off from mpirun, it would wait forever).
[[noreturn]] void AbortJob(int status);

}  // namespace evl
