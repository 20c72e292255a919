#include "evl/stop_signal.h"

#include <atomic>
#include <csignal>

namespace evl {
namespace {

std::atomic<int> g_stop_signal{0};
std::atomic<int> g_last_stop_signal{0};
std::atomic<int> g_sigterms{0};

void OnStopSignal(int sig) {
  int none = 0;
  g_stop_signal.compare_exchange_strong(none, sig);
  g_last_stop_signal.store(sig);
  // Async-signal-safe: atomics and sigaction only.
  if (sig == SIGTERM && g_sigterms.fetch_add(1) >= 1) {
    struct sigaction dfl = {};
    dfl.sa_handler = SIG_DFL;
    sigaction(SIGTERM, &dfl, nullptr);
  }
}

}  // namespace

void InstallStopSignalHandlers() {
  struct sigaction sa = {};
  sa.sa_handler = OnStopSignal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;  // an interrupted read or write of a checkpoint resumes
  sigaction(SIGUSR1, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

int StopSignal() { return g_stop_signal.load(); }
int LastStopSignal() { return g_last_stop_signal.load(); }

void ResetStopSignalForTest() {
  g_stop_signal.store(0);
  g_last_stop_signal.store(0);
  g_sigterms.store(0);
  InstallStopSignalHandlers();
}

}  // namespace evl
