// `evl launch -n N [--hosts H] [--oversubscribe] -- train --config ...`: runs mpirun with the flags
// users would otherwise have to remember, and forwards its exit status.
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <iostream>
#include <thread>

#include "commands.h"

namespace evl {

int RunLaunch(int ranks, const std::string& hosts, const std::string& hostfile, bool oversubscribe, bool bind,
              const std::vector<std::string>& command, const std::string& self) {
  if (command.empty()) {
    std::cerr << "evl launch: give the evl command after --, e.g. evl launch -n 2 -- train --config C\n";
    return 2;
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
  // Forward glog settings and the test hooks to every rank.
  for (const char* var : {"GLOG_v", "GLOG_minloglevel", "EVL_TEST_EXIT_AT_STEP", "EVL_TEST_SIGNAL_AT_STEP",
                          "EVL_TEST_SLOW_CHECKPOINT_MS", "EVL_TEST_STEP_DELAY_MS",
                          "EVL_TEST_STALL_AT_STEP", "EVL_TEST_STALL_RANK"}) {
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
  execvp("mpirun", argv.data());
  std::cerr << "evl launch: cannot run mpirun: " << std::strerror(errno) << "\n";
  return 127;
}

}  // namespace evl
