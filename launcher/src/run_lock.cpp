#include "run_lock.h"

#include <fcntl.h>
#include <signal.h>
#include <glog/logging.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>

#include "evl/fault_injection.h"

namespace evl {
namespace {

using LockKind = FaultInjector::LockKind;

// 0, or the errno of a failed non-blocking lock of `kind` on `fd`.
int TryLock(int fd, LockKind kind) {
  if (const int injected = Faults().LockFailure(kind)) return injected;
  int rc;
  if (kind == LockKind::kFlock) {
    rc = flock(fd, LOCK_EX | LOCK_NB);
  } else {
    struct flock range = {};
    range.l_type = F_WRLCK;
    range.l_whence = SEEK_SET;
    rc = fcntl(fd, F_SETLK, &range);
  }
  return rc == 0 ? 0 : errno;
}

std::string FirstLine(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line.empty() ? "holder unknown" : line;
}

std::string InUse(const std::string& dir, const std::string& holder) {
  return "train.run_dir " + dir + " is in use by another job (" + holder +
         "); wait for it to end, or give this run its own train.run_dir";
}

// The fields of a holder line as RunRecord writes it: "host H, pid N, since T[, Slurm job J]".
struct Holder {
  std::string host, slurm_job;
  long pid = -1;
};

Holder ParseHolder(const std::string& line) {
  Holder h;
  auto field = [&](const std::string& key) -> std::string {
    const size_t at = line.find(key);
    if (at == std::string::npos) return "";
    const size_t from = at + key.size(), to = line.find(',', from);
    return line.substr(from, to == std::string::npos ? std::string::npos : to - from);
  };
  h.host = field("host ");
  h.slurm_job = field("Slurm job ");
  const std::string pid = field("pid ");
  if (!pid.empty() && pid.find_first_not_of("0123456789") == std::string::npos) h.pid = std::stol(pid);
  return h;
}

// Why the marker's holder is certainly gone, or "" when it may still run. Without any lock a job
// that was killed (SIGKILL, the OOM killer, a node reboot) or requeued never removes its marker.
// Only what this process can know is trusted: a pid on this same host that no longer exists, or
// this very Slurm job (a requeued job restarts only after all of its previous run has ended). A
// holder on another host, or a live pid (possibly reused), is left alone.
std::string GoneHolder(const Holder& held, const Holder& me) {
  if (!me.slurm_job.empty() && held.slurm_job == me.slurm_job)
    return "it was an earlier run of this same Slurm job (" + me.slurm_job + ")";
  if (held.host.empty() || held.host != me.host || held.pid <= 0) return "";
  if (kill(static_cast<pid_t>(held.pid), 0) != 0 && errno == ESRCH)
    return "pid " + std::to_string(held.pid) + " no longer exists on " + me.host;
  return "";
}

bool WriteWho(int fd, const std::string& who) {
  const std::string line = who + "\n";
  return ftruncate(fd, 0) == 0 && pwrite(fd, line.data(), line.size(), 0) == static_cast<ssize_t>(line.size());
}

}  // namespace

RunDirLock::~RunDirLock() {
  if (!marker_.empty()) unlink(marker_.c_str());
  if (fd_ >= 0) close(fd_);  // releases the lock; the file stays, naming the last owner
}

std::string RunDirLock::Acquire(const std::string& dir, const std::string& who) {
  const std::string lock = dir + "/.lock";
  fd_ = open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd_ < 0) return "cannot open " + lock + ": " + std::strerror(errno);
  const int flock_error = TryLock(fd_, LockKind::kFlock);
  // A record lock is released when this process closes any descriptor of the file: the holder is
  // read (on refusal) only after the lock attempts, and the file is never opened again.
  int record_error = 0;
  if (flock_error == EWOULDBLOCK) return InUse(dir, FirstLine(lock));
  if (flock_error != 0) {
    record_error = TryLock(fd_, LockKind::kRecord);
    if (record_error == EACCES || record_error == EAGAIN) return InUse(dir, FirstLine(lock));
    if (record_error == 0)
      LOG(WARNING) << lock << ": flock failed (" << std::strerror(flock_error)
                   << "; Lustre needs the `flock` mount option): locked with a POSIX record lock instead";
  }
  if (flock_error != 0 && record_error != 0) {
    const std::string marker = dir + "/.lock.held";
    int m = open(marker.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    const std::string why = std::string("flock: ") + std::strerror(flock_error) + ", fcntl: " + std::strerror(record_error);
    if (m < 0 && errno == EEXIST) {
      const std::string held = FirstLine(marker);
      const std::string gone = GoneHolder(ParseHolder(held), ParseHolder(who));
      // Removed and created again (O_EXCL): of two jobs that find the same stale marker, one wins.
      if (!gone.empty() && unlink(marker.c_str()) == 0) {
        LOG(WARNING) << marker << " named a job that has ended (" << held << "): " << gone << "; taking it over";
        m = open(marker.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
      } else {
        errno = EEXIST;
      }
    }
    if (m < 0 && errno == EEXIST)
      return InUse(dir, FirstLine(marker)) + ". This filesystem supports no locks (" + why + "); if no job runs on " +
             dir + ", delete " + marker;
    if (m < 0) return "cannot lock " + dir + " (" + why + ", marker " + marker + ": " + std::strerror(errno) + ")";
    marker_ = marker;
    const bool written = WriteWho(m, who);
    close(m);
    if (!written) LOG(WARNING) << marker << ": cannot record the owner: " << std::strerror(errno);
    LOG(WARNING) << dir << ": no lock works on this filesystem (" << why << "): the marker " << marker
                 << " stands for the lock while this job runs";
    return "";
  }
  if (!WriteWho(fd_, who)) LOG(WARNING) << lock << ": cannot record the owner: " << std::strerror(errno);
  return "";
}

}  // namespace evl
