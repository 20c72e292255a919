// `evl predict`: logits for one input (a video, decoded into the configured test views, or a .npy
// clip tensor), one row per view, plus the top-5 classes of the view-averaged softmax.
#pragma once

#include <ostream>
#include <string>
#include <vector>

#include "evl_config.pb.h"

namespace evl {

struct PredictRequest {
  std::string checkpoint;  // official .pth or evl checkpoint; empty: freshly initialised decoder
  std::string input;       // a video file, or .npy [3,T,H,W] / [V,3,T,H,W], float32, normalized
  std::string logits_out;  // .npy [V, num_classes]; empty: not written
  std::string device = "cpu";  // "cpu" or "cuda:K", as evl/device_choice.h decides
};

// Prints the top-5 table to `out`. Throws on bad input, naming the file.
void RunPredict(const EvlConfig& config, const PredictRequest& request, std::ostream& out);

// Class names from a JSON file: a list (index -> name, as the official k400_class_mappings.json),
// or an object mapping names to indices. Throws naming the file.
std::vector<std::string> LoadClassNames(const std::string& path, int num_classes);

}  // namespace evl
