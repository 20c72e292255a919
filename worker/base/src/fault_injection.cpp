#include "evl/fault_injection.h"

#include <glog/logging.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>

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
        step_delay_ms_(EnvInt("EVL_TEST_STEP_DELAY_MS", 0)),
        slow_checkpoint_ms_(EnvInt("EVL_TEST_SLOW_CHECKPOINT_MS", 0)) {
    const char* at = std::getenv("EVL_TEST_SIGNAL_AT");
    signal_at_ = at ? at : "";
    // A requeued Slurm job restarts with the same environment: signals are injected into its first
    // run only, or it would be stopped again at every restart.
    const char* restarts = std::getenv("SLURM_RESTART_COUNT");
    if (restarts && std::atoi(restarts) > 0) {
      signal_at_step_ = -1;
      signal_at_.clear();
    }
  }

  void BeforeStep(int64_t step, int rank) override {
    if (step == exit_at_) {
      LOG(ERROR) << "EVL_TEST_EXIT_AT_STEP: exiting at step " << step;
      std::_Exit(7);
    }
    if (step == signal_at_step_ && rank == 0) std::raise(SIGUSR1);
    if (step == stall_at_ && rank == stall_rank_) {
      LOG(ERROR) << "EVL_TEST_STALL_AT_STEP: rank " << rank << " hangs at step " << step;
      std::this_thread::sleep_for(std::chrono::hours(1));
    }
    if (step_delay_ms_ > 0) std::this_thread::sleep_for(std::chrono::milliseconds(step_delay_ms_));
  }

  void At(FaultPoint point) override {
    const char* name = point == FaultPoint::kStartup ? "startup" : point == FaultPoint::kEval ? "eval" : "save";
    if (signal_at_ != name || fired_) return;
    fired_ = true;
    LOG(WARNING) << "EVL_TEST_SIGNAL_AT: raising SIGUSR1 at " << name;
    std::raise(SIGUSR1);
  }

  void DuringCheckpointWrite() override {
    if (slow_checkpoint_ms_ > 0) std::this_thread::sleep_for(std::chrono::milliseconds(slow_checkpoint_ms_));
  }

 private:
  const int64_t exit_at_, stall_at_, stall_rank_;
  int64_t signal_at_step_;
  const int64_t step_delay_ms_, slow_checkpoint_ms_;
  std::string signal_at_;
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
