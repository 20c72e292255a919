// Weight import: OpenAI CLIP TorchScript archives, official EVL `.pth` checkpoints (torch.save zip
// format, read by a restricted unpickler), and state-dict loading with strict key matching.
//
// The `.pth` reader never executes anything: it interprets only the pickle opcodes a tensor
// checkpoint needs and resolves only allow-listed globals (collections.OrderedDict,
// torch._utils._rebuild_tensor_v2 / _rebuild_parameter, torch.*Storage); any other global is a
// WeightsError naming it. It behaves the same under LibTorch 1.13 and 2.x (it does not use
// torch::pickle_load, which cannot read torch.save files in 1.13).
#pragma once

#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "evl/model.h"

namespace evl {

class WeightsError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Named tensors in file order.
using StateDict = std::vector<std::pair<std::string, torch::Tensor>>;

enum class WeightsFormat { kTorchSave, kTorchScript, kEvlCheckpoint, kUnknown };
const char* WeightsFormatName(WeightsFormat f);
// Detected from the content (zip magic + entries, or evl's checkpoint magic), not the extension.
WeightsFormat DetectWeightsFormat(const std::string& path);

// Reads a torch.save zip archive. Returns the model state dict: the 'model' (or 'state_dict')
// entry when the top level is a dict holding one, else the top level itself when it maps names to
// tensors. A leading "module." (DataParallel/DDP) is stripped from every key.
StateDict ReadTorchSaveStateDict(const std::string& path);
// Same, from bytes in memory (`name` appears in errors). Used by the fuzzer.
StateDict ReadTorchSaveStateDictFromBuffer(const std::string& bytes, const std::string& name);

// Writes `{'model': {name: tensor}, 'next_step': next_step}` as a torch.save zip archive, the layout
// of the official checkpoints, so Python's torch.load opens it (keys in `state` order; the top-level
// dicts load as plain dicts). Atomic: written to PATH.tmp, then renamed. Throws WeightsError.
void WriteTorchSaveStateDict(const std::string& path, const StateDict& state, int64_t next_step);

// Reads an OpenAI CLIP TorchScript archive's `visual.*` parameters and maps them to
// VisionTransformer2D names (weight_loaders.py's mapping). Throws WeightsError naming the tensor
// on a missing tensor or a shape mismatch with `backbone`; loads into `backbone`.
void LoadClipVisual(VisionTransformer2DImpl& backbone, const std::string& path);

struct LoadReport {
  std::vector<std::string> missing;     // in the module, not in the file
  std::vector<std::string> unexpected;  // in the file, not in the module
  std::vector<std::string> reshaped;    // in both with other shapes, left as initialised (when allowed)
  std::string ToString() const;
};

// Copies `state` into module parameters/buffers by name. A shape mismatch throws naming the tensor
// unless `skip_reshaped` (fine-tuning to another class count: the head is left as initialised and
// reported); with `strict`, missing or unexpected keys throw with the full report.
LoadReport LoadStateDict(torch::nn::Module& module, const StateDict& state, bool strict,
                         const std::string& source, bool skip_reshaped = false);

// Loads the trainable part of `model` from an official .pth or an evl checkpoint (format detected).
LoadReport LoadEvlWeights(EVLTransformerImpl& model, const std::string& path, bool strict = true);

}  // namespace evl
