#include "evl/predict.h"

#include <glog/logging.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <fstream>
#include <iomanip>
#include <sstream>

#include "evl/dataset.h"
#include "evl/evaluator.h"
#include "evl/video_reader.h"
#include "evl/model_factory.h"
#include "evl/npy.h"
#include "evl/weights.h"
#include "utf8.h"

namespace evl {

std::vector<std::string> LoadClassNames(const std::string& path, int num_classes) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error(path + ": cannot open class map");
  nlohmann::json j;
  try {
    in >> j;
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error(path + ": not valid JSON: " + e.what());
  }
  std::vector<std::string> names(num_classes);
  try {
    if (j.is_array()) {
      if (static_cast<int>(j.size()) != num_classes)
        throw std::runtime_error("has " + std::to_string(j.size()) + " names, model.num_classes is " +
                                 std::to_string(num_classes));
      for (size_t i = 0; i < j.size(); ++i) names[i] = j[i].get<std::string>();
    } else if (j.is_object()) {
      for (auto it = j.begin(); it != j.end(); ++it) {
        const int idx = it.value().get<int>();
        if (idx < 0 || idx >= num_classes)
          throw std::runtime_error("class \"" + it.key() + "\" has index " + std::to_string(idx) +
                                   ", outside [0, model.num_classes " + std::to_string(num_classes) + ")");
        names[idx] = it.key();
      }
    } else {
      throw std::runtime_error("must be a JSON list or object");
    }
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error(path + ": class map: " + e.what());
  } catch (const std::runtime_error& e) {
    throw std::runtime_error(path + ": class map " + e.what());
  }
  for (int i = 0; i < num_classes; ++i)
    if (names[i].empty()) throw std::runtime_error(path + ": class map has no name for class " + std::to_string(i));
  return names;
}

namespace {

bool IsNpy(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  char magic[6] = {};
  in.read(magic, 6);
  return in.gcount() == 6 && std::string(magic, 6) == "\x93NUMPY";
}

// One input as [V, 3, T, S, S], checked against the model.
torch::Tensor LoadInput(const EvlConfig& config, const std::string& input, VideoReader& reader) {
  torch::Tensor x;
  if (IsNpy(input)) {
    x = ReadNpy(input);
  } else {
    // A video: the configured test views (data.num_temporal_views x data.num_spatial_views).
    x = LoadTestViews(input, DatasetOptionsFromConfig(config, false), reader);
  }
  if (x.dim() == 4) x = x.unsqueeze(0);
  const auto& m = config.model();
  const int64_t S = m.backbone().input_size();
  if (x.dim() != 5 || x.size(1) != 3 || x.size(2) != m.num_frames() || x.size(3) != S || x.size(4) != S) {
    std::ostringstream s;
    s << input << ": shape " << x.sizes() << ", expected [3," << m.num_frames() << "," << S << "," << S << "] or [V,3,"
      << m.num_frames() << "," << S << "," << S << "]";
    throw std::runtime_error(s.str());
  }
  return x;
}

}  // namespace

int RunPredict(const EvlConfig& config, const PredictRequest& request, std::ostream& out) {
  if (request.inputs.empty()) throw std::invalid_argument("evl predict: no input (--input or --list)");
  if (!request.logits_out.empty() && request.inputs.size() != 1)
    throw std::invalid_argument("evl predict: --logits-out takes one input, got " + std::to_string(request.inputs.size()));
  const auto& m = config.model();
  const torch::Device device(request.device);
  EVLTransformer model = BuildModel(config, device);
  if (m.backbone().weights().empty())
    LOG(WARNING) << "model.backbone.weights is empty: the backbone is RANDOM, the scores below mean nothing";
  if (request.checkpoint.empty()) {
    LOG(WARNING) << "no --checkpoint: the decoder is RANDOMLY INITIALISED, the scores below mean nothing";
  } else {
    LoadTrainedWeights(*model, request.checkpoint);
    LOG(INFO) << "loaded " << request.checkpoint;
  }
  std::vector<std::string> names;
  if (!config.data().class_map().empty()) names = LoadClassNames(config.data().class_map(), m.num_classes());
  model->eval();
  torch::NoGradGuard no_grad;
  VideoReader reader;
  const int64_t batch = std::max<int64_t>(1, config.eval().batch_size());
  const int64_t k = std::min<int64_t>(std::max(1, request.topk), m.num_classes());
  int failed = 0;
  for (const std::string& input : request.inputs) {
    torch::Tensor x;
    try {
      x = LoadInput(config, input, reader);
    } catch (const std::exception& e) {
      ++failed;
      if (request.json) out << JsonText({{"input", input}, {"error", e.what()}}) << "\n";
      else out << input << ": cannot use it: " << e.what() << "\n";
      continue;
    }
    std::vector<torch::Tensor> rows;
    for (int64_t v = 0; v < x.size(0); v += batch)
      rows.push_back(model->forward(x.narrow(0, v, std::min(batch, x.size(0) - v)).to(device)).to(torch::kCPU));
    const torch::Tensor logits = torch::cat(rows, 0);
    if (!request.logits_out.empty()) WriteNpy(request.logits_out, logits);
    const auto [values, indices] = logits.softmax(1).mean(0).topk(k);
    if (request.json) {
      nlohmann::json top = nlohmann::json::array();
      for (int64_t i = 0; i < k; ++i) {
        const int64_t c = indices[i].item<int64_t>();
        top.push_back({{"class", c}, {"name", c < static_cast<int64_t>(names.size()) ? names[c] : ""},
                       {"prob", values[i].item<double>()}});
      }
      out << JsonText({{"input", input}, {"views", x.size(0)}, {"top", top}}) << "\n";
      continue;
    }
    if (request.inputs.size() > 1) out << input << "\n";
    out << "top-" << k << " of " << x.size(0) << " view(s), mean softmax:\n";
    for (int64_t i = 0; i < k; ++i) {
      const int64_t c = indices[i].item<int64_t>();
      out << "  " << std::setw(5) << c << "  " << std::fixed << std::setprecision(4) << values[i].item<float>();
      if (c < static_cast<int64_t>(names.size())) out << "  " << names[c];
      out << "\n";
    }
  }
  return failed ? 1 : 0;
}

}  // namespace evl
