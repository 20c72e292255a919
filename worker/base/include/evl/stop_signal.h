// Stop requests by signal. SIGUSR1 (Slurm's time-limit warning, sent by `--signal`) and SIGTERM
// (scancel, preemption, `kill`) ask the job to checkpoint at the next step boundary and exit with
// kExitPreempted. The handlers are installed first thing in main, before anything can take long:
// a signal during start-up is a request like any other, not a death by the default action.
//
// A second SIGTERM while a stop is pending gives SIGTERM its default action back, so a rank that
// hangs while saving can still be killed by the next one.
#pragma once

#include "evl/exit_status.h"  // kExitPreempted

namespace evl {

void InstallStopSignalHandlers();
// The first stop signal received (SIGUSR1 or SIGTERM), or 0.
int StopSignal();
// The last one, or 0: what the stop means. A SIGTERM (scancel) after a SIGUSR1 (the time limit)
// makes the stop a cancel, not a requeue.
int LastStopSignal();
// Forgets a received signal and reinstalls the handlers (tests).
void ResetStopSignalForTest();

}  // namespace evl
