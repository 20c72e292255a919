// Turns an EvlConfig into a ready EVL model: options, device, backbone weights, dtype.
#pragma once

#include <string>

#include "evl/dataset.h"
#include "evl/model.h"
#include "evl_config.pb.h"

namespace evl {

// Maps config.model to EVLOptions; resolves precision AUTO (FP16 on CUDA, FP32 on CPU).
// Throws std::invalid_argument naming the field for FP16 on a CPU.
EVLOptions EvlOptionsFromConfig(const EvlConfig& config, const torch::Device& device);

// Builds the model on `device`: the backbone from model.backbone.weights (OpenAI CLIP TorchScript)
// or, when empty, random with model.backbone.init_seed; decoder/head freshly initialised.
EVLTransformer BuildModel(const EvlConfig& config, const torch::Device& device);

// The data pipeline's options for the train (train = true) or eval path, from config.data/model.
ClipDatasetOptions DatasetOptionsFromConfig(const EvlConfig& config, bool train);

// Parameter counts and FLOPs of config's model, as `evl info --model` prints them.
std::string ModelSummaryText(const EvlConfig& config);

}  // namespace evl
