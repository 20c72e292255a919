// Test-only fault injection: the places where a test may make evl fail on purpose, behind one
// interface. Production code calls the hooks at its fault points; the process's injector does
// nothing unless a test set EVL_TEST_* variables (read once, at the first call) or installed its own.
//
//   EVL_TEST_EXIT_AT_STEP=N        the rank exits with status 7 before step N (a dying rank)
//   EVL_TEST_STALL_AT_STEP=N       rank EVL_TEST_STALL_RANK (default 1) hangs before step N
//   EVL_TEST_SIGNAL_AT_STEP=N      rank 0 raises SIGUSR1 before step N (preemption at a known step)
//   EVL_TEST_SIGNAL_LAUNCH_AT_STEP=N:SIG  rank 0 sends SIG (USR1, TERM, KILL, INT, HUP) to its
//                                  `evl launch` (EVL_LAUNCH_PID, set by evl launch) before step N;
//                                  GROUP-SIG (GROUP-INT, GROUP-HUP) sends it to evl launch's process
//                                  group instead, as a terminal does on Ctrl-C or a hang-up
//   EVL_TEST_SIGNAL_AT=POINT       every rank raises SIGUSR1 at POINT: startup (before MPI is up),
//                                  eval (the first evaluation begins), save (a checkpoint is written);
//                                  preflight: `evl launch`'s preflight child sends SIGUSR1 to its
//                                  `evl launch` (a stop before mpirun started)
//   EVL_TEST_STEP_DELAY_MS=MS      every step takes MS longer (a job still training when a signal comes)
//   EVL_TEST_SLOW_CHECKPOINT_MS=MS each tensor of a checkpoint write takes MS longer (a crash window)
//   EVL_TEST_LOCK_FAILS=flock|all  locking the run directory fails with ENOLCK: flock only (Lustre
//                                  without `-o flock`), or every kind of lock
// Signals are injected only when SLURM_RESTART_COUNT is unset or 0 (a requeued job's first run).
#pragma once

#include <cstdint>
#include <memory>

namespace evl {

enum class FaultPoint { kStartup, kEval, kSave, kPreflight };

class FaultInjector {
 public:
  virtual ~FaultInjector() = default;
  // Before training step `step` (0-based) on `rank`.
  virtual void BeforeStep(int64_t step, int rank) {}
  // At a named point of a run.
  virtual void At(FaultPoint point) {}
  // After each tensor of a checkpoint write.
  virtual void DuringCheckpointWrite() {}
  enum class LockKind { kFlock, kRecord };
  // The errno a lock of this kind fails with here, or 0 to try it for real.
  virtual int LockFailure(LockKind kind) { return 0; }
};

// The process's injector.
FaultInjector& Faults();
// Replaces it (tests); nullptr restores the one from the environment.
void SetFaultInjectorForTest(std::unique_ptr<FaultInjector> injector);

}  // namespace evl
