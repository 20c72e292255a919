// Helpers for tests that run the `evl` binary or write scratch files.
#pragma once

#include <nlohmann/json.hpp>

#include <array>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

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
// The whole file; "" if it cannot be read.
inline std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline std::string SharedSynthData(const std::string& evl_bin) {
  static const std::string dir = [&] {
    const std::string d = ScratchDir("shared_data_" + std::to_string(getpid()));
    RunCommand(evl_bin + " data synth --out " + d + " --videos 24 --size 48x48 --frames 32");
    return d;
  }();
  return " --set data.train_list=" + dir + "/train.txt --set data.val_list=" + dir + "/val.txt --set data.data_root=" + dir;
}

// RUN_DIR/metrics.jsonl, one object per line: the training steps ({"step", "loss", ...}) when
// `key` is "step", the evaluations ({"eval_step", "top1", ...}) when it is "eval_step".
inline std::vector<nlohmann::json> ReadMetrics(const std::string& run_dir, const std::string& key = "step") {
  std::ifstream in(run_dir + "/metrics.jsonl");
  std::vector<nlohmann::json> out;
  for (std::string line; std::getline(in, line);) {
    auto j = nlohmann::json::parse(line);
    if (j.contains(key)) out.push_back(std::move(j));
  }
  return out;
}

inline std::vector<double> StepLosses(const std::string& run_dir) {
  std::vector<double> losses;
  for (const auto& j : ReadMetrics(run_dir)) losses.push_back(j["loss"].get<double>());
  return losses;
}

}  // namespace evl::test
