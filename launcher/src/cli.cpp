#include "evl/cli.h"

#include <CLI/CLI.hpp>
#include <glog/logging.h>

#include <unistd.h>

#include <algorithm>
#include <iostream>

#include "commands.h"
#include "config.h"
#include "evl/checkpoint_format.h"
#include "evl/fault_injection.h"
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

// Edit distance, for "did you mean".
size_t Distance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] != b[j - 1])});
      diagonal = up;
    }
  }
  return row[b.size()];
}

// CLI11 calls a mistyped subcommand "A subcommand is required" or an unexpected argument; name it,
// and the closest one. Walks the subcommand levels the way the parser will (options skipped).
std::string UnknownSubcommand(CLI::App& app, int argc, char** argv) {
  CLI::App* level = &app;
  std::string path = "evl";
  for (int i = 1; i < argc; ++i) {
    const std::string word = argv[i];
    if (word.empty() || word[0] == '-') continue;
    auto subs = level->get_subcommands([](CLI::App*) { return true; });
    if (subs.empty()) return "";
    auto found = std::find_if(subs.begin(), subs.end(), [&](CLI::App* a) { return a->get_name() == word; });
    if (found == subs.end()) {
      std::string best;
      size_t best_d = 3;  // more than two edits away is not a typo
      std::string names;
      for (CLI::App* a : subs) {
        names += (names.empty() ? "" : ", ") + a->get_name();
        const size_t d = Distance(word, a->get_name());
        if (d < best_d) best_d = d, best = a->get_name();
      }
      return path + ": unknown subcommand '" + word + "'" + (best.empty() ? "" : " (did you mean '" + best + "'?)") +
             "; subcommands: " + names;
    }
    level = *found;
    path += " " + word;
  }
  return "";
}

// `--set a=1 b=2` as `--set a=1 --set b=2`: the words with '=' that follow a --set value. (CLI11's
// allow_extra_args does this too, but then loses a following `--` and what comes after it.)
std::vector<std::string> ExpandSetArguments(int argc, char** argv) {
  std::vector<std::string> out;
  bool after_set_value = false;
  for (int i = 0; i < argc; ++i) {
    const std::string word = argv[i];
    if (word == "--") {
      for (; i < argc; ++i) out.push_back(argv[i]);
      break;
    }
    if (after_set_value && word[0] != '-' && word.find('=') != std::string::npos) {
      out.push_back("--set");
    } else {
      after_set_value = false;
    }
    if (!out.empty() && out.back() == "--set") after_set_value = true;
    out.push_back(word);
  }
  return out;
}

}  // namespace

void AddConfigFlags(CLI::App* cmd, ConfigFlags* flags) {
  cmd->add_option("--config", flags->config_path,
                  "config file (protobuf text format, schema configs/evl_config.proto); "
                  "default: the embedded quick-start config");
  cmd->add_option("--set", flags->overrides,
                  "override fields: --set model.num_frames=16 data.num_workers=4 (or --set given again)")
      ->allow_extra_args(false);
}

void OnChosen(CLI::App* cmd, Invocation& inv, std::function<int()> run) {
  cmd->callback([&inv, run = std::move(run)] { inv.run = run; });
}

bool PassesPreflight(const EvlConfig& config, PreflightFor what, int world, ListCheck lists) {
  const std::vector<std::string> problems = PreflightProblems(config, what, world, lists);
  if (problems.empty()) return true;
  if (LogRank() == 0) LOG(ERROR) << PreflightReport(problems);
  return false;
}

bool PassesRankPreflight(const EvlConfig& config, PreflightFor what, int preflight_ranks) {
  if (preflight_ranks > 0) Faults().At(FaultPoint::kPreflight);  // evl launch's preflight child
  const int world = preflight_ranks > 0 ? preflight_ranks : LogWorld();
  const bool one_of_many = preflight_ranks == 0 && world > 1;
  return PassesPreflight(config, what, world, one_of_many ? ListCheck::kExistence : ListCheck::kEveryLine);
}

void AddPreflightRanksOption(CLI::App* cmd, int* preflight_ranks) {
  cmd->add_option("--preflight-ranks", *preflight_ranks, "only check the config and the data lists for N ranks")
      ->group("");
}

int RunCli(int argc, char** argv) {
  InitLogging(argv[0]);
  CLI::App app{"evl: train and evaluate EVL (frozen CLIP video learners) across MPI ranks"};
  app.require_subcommand(1);
  app.set_help_all_flag("--help-all", "help for every subcommand");
  app.set_version_flag("--version", std::string("evl ") + EVL_VERSION + " (commit " + EVL_GIT_COMMIT + ")");
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

  if (const std::string unknown = UnknownSubcommand(app, argc, argv); !unknown.empty()) {
    std::cerr << unknown << "\n";
    return 2;
  }
  try {
    std::vector<std::string> words = ExpandSetArguments(argc, argv);
    words.erase(words.begin());                 // CLI11 takes the arguments without the program name,
    std::reverse(words.begin(), words.end());  // last first
    app.parse(words);
  } catch (const CLI::ParseError& e) {
    // --help and --version exit 0; every usage error exits 2, as config errors do.
    const int status = app.exit(e);
    return status == 0 ? 0 : 2;
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
