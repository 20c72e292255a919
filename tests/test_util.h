// Helpers for tests that run the `evl` binary or write scratch files.
#pragma once

#include <array>
#include <cstdio>
#include <string>

#include <unistd.h>

namespace evl::test {

struct CommandResult {
  int status = -1;
  std::string output;  // stdout and stderr together
};

// Runs a shell command, capturing stdout+stderr. Exit status as returned by the command.
inline CommandResult RunCommand(const std::string& command) {
  CommandResult r;
  FILE* p = popen((command + " 2>&1").c_str(), "r");
  if (!p) return r;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) r.output.append(buf.data(), n);
  int st = pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  return r;
}

// A fresh empty directory under the build tree, removed and recreated on each call.
inline std::string ScratchDir(const std::string& name) {
  std::string dir = "scratch/" + name;
  RunCommand("rm -rf '" + dir + "' && mkdir -p '" + dir + "'");
  return dir;
}

// One synthetic dataset, written once per test process by `evl data synth`, for every training run
// that is compared with another (see docs/training.md, Known issues). Returns the --set flags.
inline std::string SharedSynthData(const std::string& evl_bin) {
  static const std::string dir = [&] {
    const std::string d = ScratchDir("shared_data_" + std::to_string(getpid()));
    RunCommand(evl_bin + " data synth --out " + d + " --videos 24 --size 48x48 --frames 32");
    return d;
  }();
  return " --set data.train_list=" + dir + "/train.txt --set data.val_list=" + dir + "/val.txt --set data.data_root=" + dir;
}

}  // namespace evl::test
