#include "evl/cli.h"

#include <CLI/CLI.hpp>
#include <glog/logging.h>

#include <unistd.h>

#include "commands.h"
#include "config.h"
#include "evl/checkpoint_format.h"
#include "evl/logging.h"
#include "evl/video_list.h"

namespace evl {
namespace {

// The running evl binary, so `evl launch` starts the same build on every rank.
std::string SelfPath(const char* argv0) {
  char buf[4096];
  const ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  return n > 0 ? std::string(buf, n) : argv0;
}

}  // namespace

void AddConfigFlags(CLI::App* cmd, ConfigFlags* flags) {
  cmd->add_option("--config", flags->config_path,
                  "config file (protobuf text format, schema configs/evl_config.proto); "
                  "default: the embedded quick-start config");
  cmd->add_option("--set", flags->overrides,
                  "override a field: --set model.num_frames=16 (repeatable)")
      ->allow_extra_args(false);
}

void OnChosen(CLI::App* cmd, Invocation& inv, std::function<int()> run) {
  cmd->callback([&inv, run = std::move(run)] { inv.run = run; });
}

int RunCli(int argc, char** argv) {
  InitLogging(argv[0]);
  CLI::App app{"evl: train and evaluate EVL (frozen CLIP video learners) across MPI ranks"};
  app.require_subcommand(1);
  app.set_help_all_flag("--help-all", "help for every subcommand");
  Invocation inv{&argc, &argv, SelfPath(argv[0]), nullptr};
  AddTrainCommand(app, inv);
  AddEvalCommand(app, inv);
  AddPredictCommand(app, inv);
  AddLaunchCommand(app, inv);
  AddSubmitCommand(app, inv);
  AddDataCommands(app, inv);
  AddCkptCommands(app, inv);
  AddConfigCommand(app, inv);
  AddInfoCommand(app, inv);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  if (!inv.run) return 2;  // unreachable: every leaf subcommand sets it, CLI11 requires one
  try {
    return inv.run();
  } catch (const ConfigError& e) {
    LOG(ERROR) << e.what();
    return 2;
  } catch (const CheckpointError& e) {
    LOG(ERROR) << e.what();
    return 1;
  } catch (const DataError& e) {
    LOG(ERROR) << e.what();
    return 1;
  } catch (const std::invalid_argument& e) {
    LOG(ERROR) << e.what();
    return 2;
  } catch (const std::exception& e) {
    LOG(ERROR) << e.what();
    return 1;
  }
}

}  // namespace evl
