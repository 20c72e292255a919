// The `evl` subcommands. Each *_cmd.cpp registers its own: its flags, its help text and what runs
// when it is chosen. cli.cpp builds the app from them, parses, runs the chosen one and maps its
// errors to exit statuses.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "evl/device_choice.h"
#include "evl/preflight.h"
#include "evl_config.pb.h"

namespace CLI {
class App;
}  // namespace CLI

namespace evl {

struct ConfigFlags {
  std::string config_path;  // empty: embedded default
  std::vector<std::string> overrides;
};

// What a subcommand may need from the process, and what it leaves to run once parsing is done.
struct Invocation {
  int* argc = nullptr;  // MPI_Init takes them (rank jobs)
  char*** argv = nullptr;
  std::string self;          // this evl binary: `launch` and `submit` start it again
  std::function<int()> run;  // set by the chosen subcommand; returns the exit status
};

// Adds --config and --set, parsed into `flags`.
void AddConfigFlags(CLI::App* cmd, ConfigFlags* flags);
// When `cmd` is chosen, `run` is what the process does (called after the whole line is parsed).
void OnChosen(CLI::App* cmd, Invocation& inv, std::function<int()> run);
// Runs evl/preflight.h; false after printing every problem (once per job: rank 0 of the launcher's
// environment prints, the other ranks stay quiet). `world` 0: unknown.
bool PassesPreflight(const EvlConfig& config, PreflightFor what, int world, ListCheck lists = ListCheck::kEveryLine);
// `evl train`/`eval` before MPI starts. With --preflight-ranks N (what `evl launch` runs once) or
// alone: everything, every line of the lists. As one rank of many: the lists' existence only; rank
// 0 reads them for the job (evl/dataset_lists.h), so N ranks do not each read them.
bool PassesRankPreflight(const EvlConfig& config, PreflightFor what, int preflight_ranks);
// Adds the hidden --preflight-ranks N option `evl launch` uses to check a rank command for a job of
// N ranks once, in one process, before starting mpirun (the command then only checks).
void AddPreflightRanksOption(CLI::App* cmd, int* preflight_ranks);

// What `evl info` prints: versions built with and running with, and the commit (MPI initialised or not).
std::string InfoText();

// train.device as the topology's device request.
DeviceRequest DeviceRequestOf(const EvlConfig& config);
// The device of a single-process command (predict) by the same rule as a job's rank 0.
std::string SingleProcessDevice(const EvlConfig& config);

// One registration per file, in the order `evl --help` lists them.
void AddTrainCommand(CLI::App& app, Invocation& inv);        // train_cmd.cpp
void AddEvalCommand(CLI::App& app, Invocation& inv);         // eval_cmd.cpp
void AddPredictCommand(CLI::App& app, Invocation& inv);      // predict_cmd.cpp
void AddLaunchCommand(CLI::App& app, Invocation& inv);       // launch_cmd.cpp
void AddSubmitCommand(CLI::App& app, Invocation& inv);       // submit_cmd.cpp
void AddDataCommands(CLI::App& app, Invocation& inv);        // data_cmd.cpp: `data`, synth, probe
void AddDataPrepareCommand(CLI::App& data, Invocation& inv);  // data_prepare_cmd.cpp
void AddDataBenchCommand(CLI::App& data, Invocation& inv);    // data_bench_cmd.cpp
void AddCkptCommands(CLI::App& app, Invocation& inv);        // ckpt_cmd.cpp
void AddConfigCommand(CLI::App& app, Invocation& inv);       // info.cpp
void AddInfoCommand(CLI::App& app, Invocation& inv);         // info.cpp

}  // namespace evl
