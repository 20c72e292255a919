#include "evl/fault_injection.h"

#include <glog/logging.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>

#include "evl/exit_status.h"

namespace evl {
namespace {

int64_t EnvInt(const char* name, int64_t otherwise) {
  const char* v = std::getenv(name);
  return v && *v ? std::atoll(v) : otherwise;
}

class EnvironmentFaults : public FaultInjector {
 public:
  EnvironmentFaults()
      : exit_at_(EnvInt("EVL_TEST_EXIT_AT_STEP", -1)),
        stall_at_(EnvInt("EVL_TEST_STALL_AT_STEP", -1)),
        stall_rank_(EnvInt("EVL_TEST_STALL_RANK", 1)),
        signal_at_step_(EnvInt("EVL_TEST_SIGNAL_AT_STEP", -1)),
        launcher_pid_(EnvInt("EVL_LAUNCH_PID", -1)),
        step_delay_ms_(EnvInt("EVL_TEST_STEP_DELAY_MS", 0)),
        slow_checkpoint_ms_(EnvInt("EVL_TEST_SLOW_CHECKPOINT_MS", 0)) {
    const char* lock = std::getenv("EVL_TEST_LOCK_FAILS");
    lock_fails_ = lock ? lock : "";
    // "STEP:SIGNAL" (USR1, TERM or KILL): rank 0 sends SIGNAL to its `evl launch` at STEP.
    if (const char* launch = std::getenv("EVL_TEST_SIGNAL_LAUNCH_AT_STEP")) {
      const std::string v = launch;
      const size_t colon = v.find(':');
      if (colon != std::string::npos) {
        signal_launch_at_step_ = std::atoll(v.substr(0, colon).c_str());
        std::string name = v.substr(colon + 1);
        signal_launch_group_ = name.rfind("GROUP-", 0) == 0;
        if (signal_launch_group_) name = name.substr(6);
        signal_launch_ = name == "KILL"   ? SIGKILL
                         : name == "TERM" ? SIGTERM
                         : name == "INT"  ? SIGINT
                         : name == "HUP"  ? SIGHUP
                                          : SIGUSR1;
      }
    }
    const char* at = std::getenv("EVL_TEST_SIGNAL_AT");
    signal_at_ = at ? at : "";
    // A requeued Slurm job restarts with the same environment: signals are injected into its first
    // run only, or it would be stopped again at every restart.
    const char* restarts = std::getenv("SLURM_RESTART_COUNT");
    if (restarts && std::atoi(restarts) > 0) {
      signal_at_step_ = -1;
      signal_launch_at_step_ = -1;
      signal_at_.clear();
    }
  }

  void BeforeStep(int64_t step, int rank) override {
    if (step == exit_at_) {
      LOG(ERROR) << "EVL_TEST_EXIT_AT_STEP: exiting at step " << step;
      std::_Exit(kExitTestCrash);
    }
    if (step == signal_at_step_ && rank == 0) std::raise(SIGUSR1);
    if (step == signal_launch_at_step_ && rank == 0 && launcher_pid_ > 0) {
      const pid_t launcher = static_cast<pid_t>(launcher_pid_);
      LOG(WARNING) << "EVL_TEST_SIGNAL_LAUNCH_AT_STEP: signal " << signal_launch_ << " to evl launch (pid "
                   << launcher_pid_ << (signal_launch_group_ ? ", its process group" : "") << ") at step " << step;
      if (signal_launch_group_) {
        // Only a group that evl launch leads, as a shell's foreground job: never the test runner's.
        if (getpgid(launcher) == launcher) kill(-launcher, signal_launch_);
        else LOG(ERROR) << "EVL_TEST_SIGNAL_LAUNCH_AT_STEP: evl launch does not lead its process group; not signalled";
      } else {
        kill(launcher, signal_launch_);
      }
    }
    if (step == stall_at_ && rank == stall_rank_) {
      LOG(ERROR) << "EVL_TEST_STALL_AT_STEP: rank " << rank << " hangs at step " << step;
      std::this_thread::sleep_for(std::chrono::hours(1));
    }
    if (step_delay_ms_ > 0) std::this_thread::sleep_for(std::chrono::milliseconds(step_delay_ms_));
  }

  void At(FaultPoint point) override {
    const char* name = point == FaultPoint::kStartup ? "startup"
                       : point == FaultPoint::kEval  ? "eval"
                       : point == FaultPoint::kSave  ? "save"
                                                     : "preflight";
    if (signal_at_ != name || fired_) return;
    fired_ = true;
    if (point == FaultPoint::kPreflight) {
      LOG(WARNING) << "EVL_TEST_SIGNAL_AT: SIGUSR1 to evl launch (pid " << launcher_pid_ << ") during its preflight";
      if (launcher_pid_ > 0) kill(static_cast<pid_t>(launcher_pid_), SIGUSR1);
      return;
    }
    LOG(WARNING) << "EVL_TEST_SIGNAL_AT: raising SIGUSR1 at " << name;
    std::raise(SIGUSR1);
  }

  int LockFailure(LockKind kind) override {
    if (lock_fails_ == "all" || (lock_fails_ == "flock" && kind == LockKind::kFlock)) return ENOLCK;
    return 0;
  }

  void DuringCheckpointWrite() override {
    if (slow_checkpoint_ms_ > 0) std::this_thread::sleep_for(std::chrono::milliseconds(slow_checkpoint_ms_));
  }

 private:
  const int64_t exit_at_, stall_at_, stall_rank_;
  int64_t signal_at_step_;
  const int64_t launcher_pid_;
  int64_t signal_launch_at_step_ = -1;
  int signal_launch_ = SIGUSR1;
  bool signal_launch_group_ = false;  // to the launcher's process group, not the launcher alone
  const int64_t step_delay_ms_, slow_checkpoint_ms_;
  std::string signal_at_, lock_fails_;
  bool fired_ = false;
};

std::atomic<FaultInjector*> g_override{nullptr};

}  // namespace

FaultInjector& Faults() {
  static EnvironmentFaults from_environment;  // thread-safe initialisation: loader and writer threads call this too
  FaultInjector* o = g_override.load();
  return o ? *o : from_environment;
}

void SetFaultInjectorForTest(std::unique_ptr<FaultInjector> injector) {
  static std::unique_ptr<FaultInjector> owned;
  g_override.store(injector.get());
  owned = std::move(injector);
}

}  // namespace evl
