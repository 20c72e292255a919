// The run directory as the record of a training job, and the job as its only owner.
//
// Rank 0 takes the run directory's lock (run_lock.h: held until the process ends, so sequential
// runs keep auto-resuming) and refuses a second job on the same run directory, naming the holder. It then writes config.pbtxt (the effective config), info.txt (`evl info`,
// with the commit) and appends the command line to commands.txt. Every rank logs to
// RUN_DIR/logs/: rank 0 everything, the others from their first warning on (the file exists only
// when a rank had news).
#pragma once

#include <memory>
#include <string>

#include "evl/communicator.h"
#include "evl/topology.h"
#include "run_lock.h"
#include "evl_config.pb.h"

namespace evl {

class RunRecord {
 public:
  // Collective: every rank learns whether rank 0 got the lock. `command` is the command line.
  RunRecord(const EvlConfig& config, const Topology& topo, const std::string& command, const std::string& info,
            Communicator& comm);
  ~RunRecord();
  RunRecord(const RunRecord&) = delete;
  RunRecord& operator=(const RunRecord&) = delete;

  // Empty when this job owns the run directory; otherwise why not (the same on every rank).
  const std::string& refusal() const { return refusal_; }

 private:
  std::string refusal_;
  std::unique_ptr<RunDirLock> lock_;  // rank 0's
  std::unique_ptr<class RankLogSink> sink_;
};

}  // namespace evl
