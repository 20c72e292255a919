// `evl predict`: the top classes of videos or .npy clip tensors, in this process.
#include <CLI/CLI.hpp>

#include <fstream>
#include <iostream>
#include <sstream>

#include "commands.h"
#include "config.h"
#include "evl/checkpoint_format.h"
#include "evl/predict.h"
#include "evl/weights.h"

namespace evl {
namespace {

// The model the weights belong to: --config, or the config an evl checkpoint carries. The embedded
// quick-start default would silently build another model, so it is never used here.
EvlConfig PredictConfig(const ConfigFlags& flags, const std::string& checkpoint) {
  if (!flags.config_path.empty()) return LoadEffectiveConfig(flags.config_path, flags.overrides);
  if (!checkpoint.empty() && DetectWeightsFormat(checkpoint) == WeightsFormat::kEvlCheckpoint) {
    EvlConfig config = ParseConfigText(ReadCheckpointFile(checkpoint).config_text, checkpoint + " (its config)");
    for (const auto& o : flags.overrides) ApplyOverride(&config, o);
    Finalize(&config);
    return config;
  }
  throw std::invalid_argument("evl predict: give --config (the config the weights were trained with), or an evl "
                              "checkpoint as --checkpoint (it carries its config)");
}

// --list: one input per line; a dataset list's label column, if any, is ignored.
std::vector<std::string> ReadInputList(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::invalid_argument("--list " + path + ": cannot open");
  std::vector<std::string> inputs;
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream words(line);
    std::string first;
    words >> first;
    if (!first.empty()) inputs.push_back(first);
  }
  return inputs;
}

}  // namespace

void AddPredictCommand(CLI::App& app, Invocation& inv) {
  auto* cmd = app.add_subcommand("predict", "the top classes of videos or .npy clip tensors");
  auto flags = std::make_shared<ConfigFlags>();
  auto request = std::make_shared<PredictRequest>();
  auto list = std::make_shared<std::string>();
  AddConfigFlags(cmd, flags.get());
  cmd->add_option("--checkpoint", request->checkpoint, "official .pth or evl checkpoint (an evl one carries its config)");
  cmd->add_option("--input", request->inputs,
                  "videos (test views) or .npy clip tensors [3,T,H,W] / [V,3,T,H,W] (normalized); repeatable");
  cmd->add_option("--list", *list, "a file with one input per line (a dataset list works: labels are ignored)");
  cmd->add_option("--topk", request->topk, "how many classes per input")->check(CLI::PositiveNumber);
  cmd->add_flag("--json", request->json, "one JSON object per input: input, views, top [{class, name, prob}] or error");
  cmd->add_option("--logits-out", request->logits_out, "write raw logits [V, num_classes] of the one input as .npy");
  OnChosen(cmd, inv, [flags, request, list] {
    const EvlConfig config = PredictConfig(*flags, request->checkpoint);
    if (!list->empty())
      for (auto& input : ReadInputList(*list)) request->inputs.push_back(input);
    if (!PassesPreflight(config, PreflightFor::kPredict, 1)) return 2;
    request->device = SingleProcessDevice(config);
    return RunPredict(config, *request, std::cout);
  });
}

}  // namespace evl
