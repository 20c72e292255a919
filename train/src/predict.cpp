#include "evl/predict.h"

#include <glog/logging.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <fstream>
#include <iomanip>

#include "evl/dataset.h"
#include "evl/evaluator.h"
#include "evl/video_reader.h"
#include "evl/model_factory.h"
#include "evl/npy.h"
#include "evl/weights.h"

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

}  // namespace

void RunPredict(const EvlConfig& config, const PredictRequest& request, std::ostream& out) {
  if (request.input.empty()) throw std::invalid_argument("--input is required");
  torch::Tensor x;
  if (IsNpy(request.input)) {
    x = ReadNpy(request.input);
  } else {
    // A video: the configured test views (data.num_temporal_views x data.num_spatial_views).
    const ClipDatasetOptions o = DatasetOptionsFromConfig(config, false);
    VideoReader reader;
    x = LoadTestViews(request.input, o, reader);
  }
  if (x.dim() == 4) x = x.unsqueeze(0);
  const auto& m = config.model();
  const int64_t S = m.backbone().input_size();
  if (x.dim() != 5 || x.size(1) != 3 || x.size(2) != m.num_frames() || x.size(3) != S || x.size(4) != S) {
    std::ostringstream s;
    s << request.input << ": shape " << x.sizes() << ", expected [3," << m.num_frames() << "," << S << "," << S
      << "] or [V,3," << m.num_frames() << "," << S << "," << S << "]";
    throw std::runtime_error(s.str());
  }
  const torch::Device device(request.device);
  EVLTransformer model = BuildModel(config, device);
  if (!request.checkpoint.empty()) {
    LoadTrainedWeights(*model, request.checkpoint);
    LOG(INFO) << "loaded " << request.checkpoint;
  }
  model->eval();
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> rows;
  const int64_t batch = std::max<int64_t>(1, config.eval().batch_size());
  for (int64_t v = 0; v < x.size(0); v += batch)
    rows.push_back(model->forward(x.narrow(0, v, std::min(batch, x.size(0) - v)).to(device)).to(torch::kCPU));
  torch::Tensor logits = torch::cat(rows, 0);
  if (!request.logits_out.empty()) WriteNpy(request.logits_out, logits);

  std::vector<std::string> names;
  if (!config.data().class_map().empty()) names = LoadClassNames(config.data().class_map(), m.num_classes());
  auto probs = logits.softmax(1).mean(0);
  auto top = probs.topk(std::min<int64_t>(5, probs.size(0)));
  auto values = std::get<0>(top), indices = std::get<1>(top);
  out << "top-5 of " << x.size(0) << " view(s), mean softmax:\n";
  for (int64_t i = 0; i < values.size(0); ++i) {
    const int64_t c = indices[i].item<int64_t>();
    out << "  " << std::setw(5) << c << "  " << std::fixed << std::setprecision(4) << values[i].item<float>();
    if (c < static_cast<int64_t>(names.size()) && !names[c].empty()) out << "  " << names[c];
    out << "\n";
  }
}

}  // namespace evl
