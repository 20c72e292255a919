// `evl predict`: the class scores of one video (test views) or a .npy clip tensor, in this process.
#include <CLI/CLI.hpp>

#include <iostream>

#include "commands.h"
#include "config.h"
#include "evl/predict.h"

namespace evl {

void AddPredictCommand(CLI::App& app, Invocation& inv) {
  auto* cmd = app.add_subcommand("predict", "logits for one video or a .npy clip tensor");
  auto flags = std::make_shared<ConfigFlags>();
  auto request = std::make_shared<PredictRequest>();
  AddConfigFlags(cmd, flags.get());
  cmd->add_option("--checkpoint", request->checkpoint, "official .pth or evl checkpoint");
  cmd->add_option("--input", request->input,
                  "a video (test views) or a .npy clip tensor [3,T,H,W] / [V,3,T,H,W] (normalized)")
      ->required();
  cmd->add_option("--logits-out", request->logits_out, "write raw logits [V, num_classes] as .npy");
  OnChosen(cmd, inv, [flags, request] {
    const EvlConfig config = LoadEffectiveConfig(flags->config_path, flags->overrides);
    if (!PassesPreflight(config, PreflightFor::kPredict, 1)) return 2;
    request->device = SingleProcessDevice(config);
    RunPredict(config, *request, std::cout);
    return 0;
  });
}

}  // namespace evl
