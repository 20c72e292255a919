// Subcommand entry points, one per file, called by cli.cpp after flag parsing.
#pragma once

#include <string>
#include <vector>

#include "evl/device_choice.h"
#include "evl_config.pb.h"

namespace evl {

struct ConfigFlags {
  std::string config_path;  // empty: embedded default
  std::vector<std::string> overrides;
};

struct SubmitOptions {
  int nodes = 1;
  int gpus_per_node = 0;
  int tasks_per_node = 0;  // 0: one per GPU, or 1 without GPUs
  int cpus_per_task = 0;
  std::string time, partition, account, qos, constraint, mem, job_name, dependency;
  int signal_seconds = -1;  // -1: slurm.signal_seconds of the config
  int max_requeues = -1;    // -1: slurm.max_requeues of the config
  std::string template_path;  // empty: the embedded slurm/evl.sbatch.in
  bool dry_run = false;
  bool eval = false;        // submit `evl eval` instead of `evl train`
  bool then_eval = false;   // submit training and an evaluation that starts after it succeeds
  std::string checkpoint;   // evl eval --checkpoint (default: the run's newest valid checkpoint)
  std::vector<std::string> sbatch_args;  // after --
};

struct DataBenchOptions {
  std::string list, data_root;  // empty list: K400-like synthetic clips in RUN_DIR/bench_k400like
  int videos = 8;
  int rounds = 2;
  std::string python = "/usr/bin/python3";  // Debian's, with python3-av and python3-torch
  std::string pyav_script;
};

struct PrepareOptions {
  std::string list, data_root, out_dir;
  int short_side = 320;
  int keyint = 16;
  int crf = 23;
};

// train.device as the topology's device request.
DeviceRequest DeviceRequestOf(const EvlConfig& config);
// The device of a single-process command (predict) by the same rule as a job's rank 0.
std::string SingleProcessDevice(const EvlConfig& config);

int RunInfo(bool with_model, const ConfigFlags& flags);
int RunDataSynth(const struct SynthOptions& options);
int RunTrain(int* argc, char*** argv, const ConfigFlags& flags, const struct TrainFlags& train_flags);
int RunEval(int* argc, char*** argv, const ConfigFlags& flags, const std::string& checkpoint, const std::string& out);
int RunCkpt(const std::string& action, const std::string& path);
int RunCkptExport(const std::string& path, const std::string& out);
int RunLaunch(int ranks, const std::string& hosts, const std::string& hostfile, bool oversubscribe, bool bind,
              const std::vector<std::string>& command, const std::string& self);
int RunSubmit(const ConfigFlags& flags, const SubmitOptions& options, const std::string& self);
int RunDataBench(const ConfigFlags& flags, const DataBenchOptions& options);
int RunDataPrepare(int* argc, char*** argv, const PrepareOptions& options);
int RunDataProbe(const ConfigFlags& flags, const std::string& list, const std::string& data_root, int num_classes);

}  // namespace evl
