#include "run_lock.h"

#include <fcntl.h>
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
    const int m = open(marker.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    const std::string why = std::string("flock: ") + std::strerror(flock_error) + ", fcntl: " + std::strerror(record_error);
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
