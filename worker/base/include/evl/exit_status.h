// The exit statuses of evl's commands, in one table (docs/training.md and slurm/evl.sbatch.in
// repeat it). A scheduler or script decides from the number alone whether to resume:
//
//   status  meaning                                                          resume?
//   0       done
//   1       an error while running, named in the log                         after fixing it
//   2       usage, config or preflight problem, or the run directory is      after fixing it
//           held by another job; nothing started
//   3       the run diverged (NaN/Inf); nothing of it was saved              no: change the recipe
//   4       a collective stalled (a rank hung, died or lost its network);    yes
//           the job was aborted
//   5       training ended, or stopped by a signal, but its last checkpoint  yes (from the last
//           could not be written: that state is not on disk                  checkpoint written)
//   7       a test's simulated crash (EVL_TEST_EXIT_AT_STEP)
//   75      stopped by a signal after saving a checkpoint (EX_TEMPFAIL)      yes
#pragma once

namespace evl {

constexpr int kExitError = 1;
constexpr int kExitUsage = 2;
constexpr int kExitDiverged = 3;
constexpr int kExitStalled = 4;
constexpr int kExitNotSaved = 5;
constexpr int kExitTestCrash = 7;
constexpr int kExitPreempted = 75;

}  // namespace evl
