// Ending the whole job from one rank, within a bounded time whatever MPI does. MPI_Abort has to
// reach the other ranks' daemons; with a node's link down it waits for them indefinitely (measured:
// 120 s and counting, until the link came back), which on a cluster burns the allocation until its
// time limit. A rank that has decided to abort therefore also ends itself after a grace period;
// the other side gives up on its own stall deadline.
//
// The watchdog that ends the process starts before anything else an abort does, and it uses only
// write(2) and _Exit: a report through glog could block on glog's mutex (held by a thread stuck
// opening a log file on a shared filesystem whose link is down), and then nothing would end the job.
#pragma once

#include <functional>
#include <string>

#include "evl/exit_status.h"

namespace evl {

using AbortReport = std::function<std::string()>;

// Starts the watchdog (`grace_s`), writes what `report` says (and a newline) to stderr with
// write(2) — it is asked only once the watchdog runs, so a report that blocks cannot hang — runs
// `abort` (which should not return) and, if the process still runs `grace_s` after the start — or
// `abort` returns — ends it with `status` (std::_Exit: no destructors, no flushing).
[[noreturn]] void AbortWithin(double grace_s, int status, const AbortReport& report, const std::function<void()>& abort);

// MPI_Abort(MPI_COMM_WORLD, status) after `before` (e.g. aborting an NCCL communicator), bounded
// by AbortWithin (5 s: MPI_Abort normally ends a job, other nodes included, in about 2.5 s). Under
// mpirun, the node's Open MPI daemon is stopped too if it is still there after the grace period
// (cut off from mpirun, it would wait forever).
[[noreturn]] void AbortJob(int status, const AbortReport& report = {}, const std::function<void()>& before = {});

}  // namespace evl
