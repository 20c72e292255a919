// `evl predict`: for each input (a video, decoded into the configured test views, or a .npy clip
// tensor) the top classes of the view-averaged softmax, as a table or one JSON line per input; the
// model is built once for all of them.
#pragma once

#include <ostream>
#include <string>
#include <vector>

#include "evl_config.pb.h"

namespace evl {

struct PredictRequest {
  std::string checkpoint;  // official .pth or evl checkpoint; empty: freshly initialised decoder
  std::vector<std::string> inputs;  // video files, or .npy [3,T,H,W] / [V,3,T,H,W], float32, normalized
  std::string logits_out;  // .npy [V, num_classes] of the one input; empty: not written
  int topk = 5;
  bool json = false;       // one JSON object per input instead of the table
  std::string device = "cpu";  // "cpu" or "cuda:K", as evl/device_choice.h decides
};

// Prints each input's top classes to `out`. An input that cannot be used is reported (with the
// reason) and the others go on; returns 1 if any failed, else 0. Throws on a bad checkpoint or
// a --logits-out with several inputs.
int RunPredict(const EvlConfig& config, const PredictRequest& request, std::ostream& out);

// Class names from a JSON file: a list (index -> name, as the official k400_class_mappings.json),
// or an object mapping names to indices. Throws naming the file.
std::vector<std::string> LoadClassNames(const std::string& path, int num_classes);

}  // namespace evl
