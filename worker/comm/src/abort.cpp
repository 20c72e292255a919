#include "evl/abort.h"

#include <mpi.h>
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string>
#include <thread>

namespace evl {

namespace {

// write(2) until done or it fails: the watchdog's only way to say something.
void WriteAll(int fd, const char* p, size_t n) {
  while (n > 0) {
    const ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return;
    p += w;
    n -= static_cast<size_t>(w);
  }
}

// Open MPI's node daemon (orted, under mpirun) waits for mpirun's orders even after its ranks are
// gone: MPI_Abort only hands the request to it and exits. Cut off from mpirun, it would keep the node
// busy indefinitely. So before aborting, a rank leaves a helper process that SIGTERMs the daemon
// (it then kills its ranks and exits) if it is still there after the grace period — by then a
// reachable mpirun would have ended it. Under srun the parent is slurmstepd, which Slurm's own
// node timeouts handle. The helper uses only async-signal-safe calls (the rank is multithreaded).
void StopOpenMpiDaemonAfter(double grace_s) {
  const pid_t daemon = getppid();
  const std::string comm_path = "/proc/" + std::to_string(daemon) + "/comm";
  auto is_orted = [&comm_path] {
    char name[16] = {};
    const int fd = open(comm_path.c_str(), O_RDONLY);
    if (fd < 0) return false;
    const ssize_t n = read(fd, name, sizeof name - 1);
    close(fd);
    return n >= 6 && std::memcmp(name, "orted\n", 6) == 0;
  };
  if (!is_orted()) return;
  if (fork() != 0) return;  // the rank goes on to abort (a failed fork: no helper)
  setsid();
  // Nothing of the rank's stays open: its sockets and output pipes must close when it exits, or
  // its peers and the daemon would wait for them.
  for (int fd = 0; fd < 4096; ++fd) close(fd);
  struct timespec t = {static_cast<time_t>(grace_s), static_cast<long>((grace_s - static_cast<time_t>(grace_s)) * 1e9)};
  while (nanosleep(&t, &t) != 0) {}
  if (is_orted()) kill(daemon, SIGTERM);
  _exit(0);
}

}  // namespace

void AbortWithin(double grace_s, int status, const AbortReport& report, const std::function<void()>& abort) {
  std::thread([grace_s, status] {
    std::this_thread::sleep_for(std::chrono::duration<double>(grace_s));
    char note[160];
    const int n = std::snprintf(note, sizeof note,
                                "evl: the job abort did not end this process within %.0f s (a peer unreachable?); "
                                "exiting with status %d\n", grace_s, status);
    if (n > 0) WriteAll(STDERR_FILENO, note, std::min<size_t>(n, sizeof note - 1));
    std::_Exit(status);
  }).detach();
  if (report) {
    const std::string text = report() + "\n";
    WriteAll(STDERR_FILENO, text.data(), text.size());
  }
  abort();
  std::_Exit(status);
}

void AbortJob(int status, const AbortReport& report, const std::function<void()>& before) {
  constexpr double kGraceS = 5.0;
  AbortWithin(kGraceS, status, report, [status, &before] {
    if (before) before();
    StopOpenMpiDaemonAfter(kGraceS);
    MPI_Abort(MPI_COMM_WORLD, status);
  });
}

}  // namespace evl
