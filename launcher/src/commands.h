// Subcommand entry points, one per file, called by cli.cpp after flag parsing.
#pragma once

#include <string>
#include <vector>

namespace evl {

struct ConfigFlags {
  std::string config_path;  // empty: embedded default
  std::vector<std::string> overrides;
};

int RunInfo(bool with_model, const ConfigFlags& flags);
int RunDataSynth(const struct SynthOptions& options);
int RunTrain(int* argc, char*** argv, const ConfigFlags& flags, const struct TrainFlags& train_flags);
int RunEval(int* argc, char*** argv, const ConfigFlags& flags, const std::string& checkpoint, const std::string& out);
int RunCkpt(const std::string& action, const std::string& path);
int RunLaunch(int ranks, const std::string& hosts, const std::string& hostfile, bool oversubscribe, bool bind,
              const std::vector<std::string>& command, const std::string& self);
int RunDataProbe(const std::string& list, const std::string& data_root, int num_classes);

}  // namespace evl
