#include "evl/subprocess.h"

#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fcntl.h>

#include <cerrno>

extern char** environ;

namespace evl {

int RunCaptured(const std::vector<std::string>& argv, std::string* output) {
  if (argv.empty()) return 127;
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return 127;
  // posix_spawnp rather than fork: a multi-threaded parent (MPI, loader threads) must not run
  // anything between fork and exec; the dup2 onto 1 and 2 clears close-on-exec for the child's copies.
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, fds[1], 1);
  posix_spawn_file_actions_adddup2(&actions, fds[1], 2);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = -1;
  const int spawned = posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  close(fds[1]);
  if (spawned != 0) {
    close(fds[0]);
    return 127;
  }
  // `evl train` calls this after a stop signal (scontrol requeue), and more signals may come while
  // it waits: an interrupted read or wait is resumed, not taken for the end of the output.
  char buf[4096];
  while (true) {
    const ssize_t n = read(fds[0], buf, sizeof buf);
    if (n > 0) output->append(buf, static_cast<size_t>(n));
    else if (n == 0 || errno != EINTR) break;
  }
  close(fds[0]);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return 127;
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  return WIFSIGNALED(status) ? 128 + WTERMSIG(status) : 127;
}

}  // namespace evl
