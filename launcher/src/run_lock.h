// One job per run directory. The lock is RUN_DIR/.lock, taken with flock (held until the process
// ends: a crash or a requeue frees it). Only EWOULDBLOCK means another job holds it. A filesystem
// without flock (Lustre mounted without `-o flock`: ENOSYS; NFS without a lock manager: ENOLCK)
// gets a POSIX record lock (fcntl) on the same file instead, and one without any lock an exclusive
// marker file, RUN_DIR/.lock.held, which this job removes when it ends. A marker left by a job that
// was killed is taken over when its holder is certainly gone: a pid that no longer exists on this
// host, or an earlier run of this same Slurm job (a requeue); otherwise the refusal names the
// holder and says to delete the marker if no job runs there.
#pragma once

#include <string>

namespace evl {

class RunDirLock {
 public:
  RunDirLock() = default;
  ~RunDirLock();
  RunDirLock(const RunDirLock&) = delete;
  RunDirLock& operator=(const RunDirLock&) = delete;

  // Takes the lock of `dir` (which exists) for the job described by `who`. Returns "" on success,
  // otherwise why not: the holder, or what failed and how.
  std::string Acquire(const std::string& dir, const std::string& who);

 private:
  int fd_ = -1;
  std::string marker_;  // the marker file this job created, if it came to that
};

}  // namespace evl
