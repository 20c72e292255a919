// `evl launch -n N [--hosts H] [--oversubscribe] -- train --config ...`: runs mpirun with the flags
// users would otherwise have to remember, and forwards its exit status.
//
// A SIGUSR1, SIGTERM, SIGINT or SIGHUP to `evl launch` is a stop request: mpirun, given SIGTERM itself, would SIGKILL
// the ranks about two seconds later and cut a checkpoint write off. So the request reaches the
// ranks as SIGUSR1 (which mpirun forwards), evl launch waits for them — at most
// dist.checkpoint_timeout_s' default — and returns their status (75: checkpoint saved). A second
// signal is passed to mpirun as it is, which ends the job at once (a second SIGUSR1 changes nothing).
// evl launch never leaves its job behind: mpirun is started with PR_SET_PDEATHSIG, so if evl launch
// dies (SIGKILL, a crash), mpirun gets SIGTERM and takes the ranks down with it.
//
// mpirun runs in a process group of its own, with stdin from /dev/null. A terminal's Ctrl-C
// (SIGINT) and hang-up (SIGHUP) go to the foreground job's whole group: sharing it, mpirun got the
// signal itself and killed the ranks before they could save. Outside the terminal's foreground
// group mpirun must not read it (SIGTTIN would stop it); evl reads no stdin anyway.
//
// A node that becomes unreachable (its link down, not its processes dead) stalls mpirun itself: when
// a rank aborts, mpirun orders every node's daemon to kill its ranks and waits for the unreachable
// one for minutes (measured on the simulated cluster, docs/testing.md: 61-127 s). So evl launch
// watches mpirun's messages; once a rank has aborted or died, mpirun has `--abort-timeout` seconds
// (default 30) to end the job before evl launch kills it. The far side ends itself: its ranks' own
// stall deadline and evl/abort.h (which also stops the node's Open MPI daemon).
#include <CLI/CLI.hpp>
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <memory>
#include <optional>
#include <thread>

#include "commands.h"
#include "evl/exit_status.h"
#include "evl/subprocess.h"

extern char** environ;

namespace evl {
namespace {

std::atomic<int> g_signals{0};
std::atomic<int> g_last_signal{0};

void OnSignal(int sig) {
  g_last_signal.store(sig);
  g_signals.fetch_add(1);
}

// Copies mpirun's stderr to ours as it comes and notes when it reports a rank that aborted or died
// (Open MPI 4.1's messages; tests/cluster_test.cpp checks them on this Open MPI). The copying thread
// owns its state: a process left on an unreachable node may hold the pipe open long after mpirun
// is gone, so evl launch waits for the end of its output only briefly.
class AbortWatcher {
 public:
  explicit AbortWatcher(int fd) : state_(std::make_shared<State>()) {
    std::thread([fd, st = state_] {
      Copy(fd, *st);
      close(fd);
      st->done.store(true);
    }).detach();
  }
  ~AbortWatcher() {
    for (int i = 0; i < 40 && !state_->done.load(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  bool seen() const { return state_->seen.load(); }

 private:
  struct State {
    std::atomic<bool> seen{false}, done{false};
  };
  static void Copy(int fd, State& st) {
    std::string line;
    char buf[4096];
    for (ssize_t n; (n = read(fd, buf, sizeof buf)) != 0;) {
      if (n < 0) {
        if (errno == EINTR) continue;
        return;
      }
      for (ssize_t off = 0; off < n;) {
        const ssize_t w = write(STDERR_FILENO, buf + off, n - off);
        if (w <= 0) break;
        off += w;
      }
      line.append(buf, n);
      for (size_t eol; (eol = line.find('\n')) != std::string::npos; line.erase(0, eol + 1)) {
        const std::string l = line.substr(0, eol);
        if (l.find("MPI_ABORT was invoked") != std::string::npos || l.find("noticed that process rank") != std::string::npos ||
            l.find("lost communication with a remote daemon") != std::string::npos)
          st.seen.store(true);
      }
    }
  }
  std::shared_ptr<State> state_;
};

// The program `name` as execv wants it: searched in PATH like the shell does.
std::string FindInPath(const std::string& name) {
  const char* path = std::getenv("PATH");
  std::string dirs = path ? path : "/usr/local/bin:/usr/bin:/bin";
  for (size_t start = 0; start <= dirs.size();) {
    const size_t end = std::min(dirs.find(':', start), dirs.size());
    const std::string candidate = (end > start ? dirs.substr(start, end - start) : ".") + "/" + name;
    if (access(candidate.c_str(), X_OK) == 0) return candidate;
    start = end + 1;
  }
  return "";
}

// Starts `path` with `argv`, its stderr into `err_fd`, and SIGTERM as its parent-death signal.
// fork rather than posix_spawn, which cannot set PR_SET_PDEATHSIG; the child calls only
// async-signal-safe functions before exec. Returns the pid, or -1 with errno set.
pid_t SpawnTiedToUs(const std::string& path, std::vector<char*>& argv, int err_fd) {
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid != 0) return pid;
  // Set before the parent can be gone unnoticed: a parent that died before this line is caught
  // by the getppid check.
  if (prctl(PR_SET_PDEATHSIG, SIGTERM) != 0 || getppid() != parent) _exit(127);
  if (dup2(err_fd, STDERR_FILENO) < 0) _exit(127);
  if (setpgid(0, 0) != 0) _exit(127);
  const int null_fd = open("/dev/null", O_RDONLY);
  if (null_fd < 0 || dup2(null_fd, STDIN_FILENO) < 0) _exit(127);
  // The handlers evl launch installed are not mpirun's: it starts with the default actions.
  struct sigaction dfl = {};
  dfl.sa_handler = SIG_DFL;
  for (int sig : {SIGTERM, SIGINT, SIGUSR1, SIGHUP, SIGPIPE}) sigaction(sig, &dfl, nullptr);
  execve(path.c_str(), argv.data(), environ);
  _exit(127);
}

// Runs mpirun and waits for it, forwarding stop requests and bounding an abort as described above.
// From the start of `evl launch`: a stop request during the preflight (Slurm's warning, a Ctrl-C)
// used to kill it with the signal's default action (status 138 for SIGUSR1).
void InstallStopHandlers() {
  struct sigaction sa = {};
  sa.sa_handler = OnSignal;
  sigemptyset(&sa.sa_mask);
  for (int sig : {SIGTERM, SIGINT, SIGUSR1, SIGHUP}) sigaction(sig, &sa, nullptr);
  // After a hang-up the terminal or ssh pipe that evl launch copies mpirun's messages to may be
  // gone: a failed write must not end evl launch while the ranks save.
  signal(SIGPIPE, SIG_IGN);
}

int RunMpirun(std::vector<char*>& argv, double abort_timeout_s) {
  const std::string mpirun = FindInPath("mpirun");
  if (mpirun.empty()) {
    std::cerr << "evl launch: cannot run mpirun: not found in PATH (install openmpi-bin)\n";
    return 127;
  }
  int err[2];
  if (pipe2(err, O_CLOEXEC) != 0) return 127;
  const pid_t pid = SpawnTiedToUs(mpirun, argv, err[1]);
  close(err[1]);
  if (pid < 0) {
    close(err[0]);
    std::cerr << "evl launch: cannot run mpirun: " << std::strerror(errno) << "\n";
    return 127;
  }
  AbortWatcher watcher(err[0]);
  std::optional<std::chrono::steady_clock::time_point> abort_seen;  // when mpirun first reported an abort
  // The ranks' own save deadline (the proto's default; evl launch does not read their config).
  const double kSaveDeadlineS = DistConfig::default_instance().checkpoint_timeout_s();
  int forwarded = 0;
  std::chrono::steady_clock::time_point stop_requested;
  int status = 0;
  while (true) {
    const pid_t done = waitpid(pid, &status, WNOHANG);
    if (done == pid) break;
    if (done < 0 && errno != EINTR) return 127;
    const int received = g_signals.load();
    if (received > forwarded) {
      forwarded = received;
      if (received == 1) {
        std::cerr << "evl launch: stop requested; the ranks checkpoint and exit (signal again to kill them)\n";
        kill(pid, SIGUSR1);
        stop_requested = std::chrono::steady_clock::now();
      } else {
        kill(pid, g_last_signal.load());
      }
    }
    if (forwarded == 1 && std::chrono::steady_clock::now() - stop_requested > std::chrono::duration<double>(kSaveDeadlineS)) {
      std::cerr << "evl launch: the ranks did not exit within " << kSaveDeadlineS << " s of the stop request\n";
      kill(pid, SIGTERM);
      forwarded = 2;
    }
    if (watcher.seen() && !abort_seen) abort_seen = std::chrono::steady_clock::now();
    if (abort_seen && abort_timeout_s > 0 &&
        std::chrono::steady_clock::now() - *abort_seen > std::chrono::duration<double>(abort_timeout_s)) {
      std::cerr << "evl launch: a rank aborted or died and mpirun did not end the job within " << abort_timeout_s
                << " s (a node unreachable?); killing mpirun; exiting with status " << kExitStalled
                << " (the job stalled: resume from the last checkpoint)\n";
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      // The ranks' own status for a job that lost a rank or its network (evl/exit_status.h), which
      // mpirun, killed, can no longer pass on.
      return kExitStalled;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  return WIFSIGNALED(status) ? 128 + WTERMSIG(status) : 1;
}

struct LaunchOptions {
  int ranks = 1;
  std::string hosts, hostfile;
  bool oversubscribe = false, bind = false;
  double abort_timeout_s = 30;
  std::vector<std::string> command;  // after --
};

int RunLaunch(const LaunchOptions& o, const std::string& self) {
  const auto& [ranks, hosts, hostfile, oversubscribe, bind, abort_timeout_s, command] = o;
  if (command.empty()) {
    std::cerr << "evl launch: give the evl command after --, e.g. evl launch -n 2 -- train --config C\n";
    return 2;
  }
  InstallStopHandlers();
  // EVL_LAUNCH_PID lets a test's rank signal this process at a step (EVL_TEST_SIGNAL_LAUNCH_AT_STEP).
  setenv("EVL_LAUNCH_PID", std::to_string(getpid()).c_str(), 1);
  // The ranks' own preflight, run once here: one report instead of one per rank, and no mpirun
  // banners around it.
  if (command[0] == "train" || command[0] == "eval") {
    std::vector<std::string> check = {self, command[0], "--preflight-ranks", std::to_string(ranks)};
    check.insert(check.end(), command.begin() + 1, command.end());
    std::string output;
    const int status = RunCaptured(check, &output);
    if (status != 0) {
      std::cerr << output;
      return status;
    }
  }
  if (g_signals.load() > 0) {
    std::cerr << "evl launch: stop requested during the preflight; nothing was started, exiting with status "
              << kExitPreempted << " (resume to continue)\n";
    return kExitPreempted;
  }
  std::vector<std::string> args = {"mpirun", "-np", std::to_string(ranks)};
  if (geteuid() == 0) args.push_back("--allow-run-as-root");
  const bool more_than_cores = hosts.empty() && hostfile.empty() &&
                               ranks > static_cast<int>(std::thread::hardware_concurrency());
  if (oversubscribe || more_than_cores) args.push_back("--oversubscribe");
  args.push_back("--bind-to");
  args.push_back(bind ? "core" : "none");
  if (!hosts.empty()) {
    args.push_back("--host");
    args.push_back(hosts);
  }
  if (!hostfile.empty()) {
    args.push_back("--hostfile");
    args.push_back(hostfile);
  }
  // Forward glog settings and the test hooks (evl/fault_injection.h) to every rank.
  for (const char* var : {"GLOG_v", "GLOG_minloglevel", "EVL_TEST_EXIT_AT_STEP", "EVL_TEST_SIGNAL_AT_STEP",
                          "EVL_TEST_SIGNAL_AT", "EVL_TEST_SLOW_CHECKPOINT_MS", "EVL_TEST_STEP_DELAY_MS",
                          "EVL_TEST_STALL_AT_STEP", "EVL_TEST_STALL_RANK", "EVL_TEST_SIGNAL_LAUNCH_AT_STEP",
                          "EVL_LAUNCH_PID"}) {
    if (std::getenv(var)) {
      args.push_back("-x");
      args.push_back(var);
    }
  }
  args.push_back(self);
  args.insert(args.end(), command.begin(), command.end());
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  return RunMpirun(argv, abort_timeout_s);
}

}  // namespace

void AddLaunchCommand(CLI::App& app, Invocation& inv) {
  auto* cmd = app.add_subcommand("launch", "run an evl command on N local/hostfile ranks via mpirun");
  auto o = std::make_shared<LaunchOptions>();
  cmd->add_option("-n,--np", o->ranks, "number of ranks")->required();
  cmd->add_option("--hosts", o->hosts, "comma-separated host[:slots] list (mpirun --host)");
  cmd->add_option("--hostfile", o->hostfile, "mpirun hostfile");
  cmd->add_flag("--oversubscribe", o->oversubscribe, "allow more ranks than cores (automatic locally)");
  cmd->add_flag("--bind", o->bind, "bind each rank to a core (default: no binding)");
  cmd->add_option("--abort-timeout", o->abort_timeout_s,
                  "seconds mpirun gets to end the job after a rank aborted or died before evl launch kills it "
                  "(a node may be unreachable); 0: wait for mpirun")
      ->capture_default_str();
  cmd->add_option("command", o->command, "the evl command to run on every rank, after --");
  OnChosen(cmd, inv, [&inv, o] { return RunLaunch(*o, inv.self); });
}

}  // namespace evl
