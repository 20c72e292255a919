#include <cstring>

#include "evl/cli.h"
#include "evl/fault_injection.h"
#include "evl/stop_signal.h"

int main(int argc, char** argv) {
  // Before anything else: Slurm may send its warning signal while the job is still starting (MPI
  // init, loading the weights), and the default action of SIGUSR1 would kill the rank instead of
  // letting it checkpoint and requeue. Only `evl train` answers stop signals; every other command
  // keeps the default actions, so `kill` ends it.
  if (argc > 1 && std::strcmp(argv[1], "train") == 0) {
    evl::InstallStopSignalHandlers();
    evl::Faults().At(evl::FaultPoint::kStartup);
  }
  return evl::RunCli(argc, argv);
}
