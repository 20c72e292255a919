#include "evl/preflight.h"

#include <algorithm>
#include <filesystem>

#include "config.h"
#include "evl/model_factory.h"
#include "evl/predict.h"
#include "evl/rand_augment.h"
#include "evl/video_list.h"

namespace evl {
namespace {

bool IsFile(const std::string& path) {
  std::error_code ec;
  return std::filesystem::is_regular_file(path, ec);
}

bool IsDirectory(const std::string& path) {
  std::error_code ec;
  return std::filesystem::is_directory(path, ec);
}

class Checks {
 public:
  void Expect(bool ok, const std::string& problem) {
    if (!ok) problems.push_back(problem);
  }
  void File(const std::string& field, const std::string& path) {
    Expect(path.empty() || IsFile(path), field + ": no such file: " + path);
  }
  void Directory(const std::string& field, const std::string& path) {
    Expect(path.empty() || IsDirectory(path), field + ": no such directory: " + path);
  }
  // Every line of a list: its format and its labels (ReadVideoList names file:line).
  void List(const std::string& field, const std::string& path, const std::string& root, int num_classes) {
    if (path.empty()) return;
    if (!IsFile(path)) {
      problems.push_back(field + ": no such file: " + path);
      return;
    }
    if (lists == ListCheck::kExistence) return;
    try {
      if (ReadVideoList(path, root, num_classes).empty()) problems.push_back(field + ": " + path + " lists no video");
    } catch (const std::exception& e) {
      problems.push_back(field + ": " + e.what());
    }
  }
  ListCheck lists = ListCheck::kEveryLine;
  std::vector<std::string> problems;
};

}  // namespace

std::vector<std::string> PreflightProblems(const EvlConfig& config, PreflightFor what, int world, ListCheck lists) {
  Checks c;
  c.lists = lists;
  const TrainConfig& t = config.train();
  const DataConfig& d = config.data();
  const int classes = config.model().num_classes();
  const bool train = what == PreflightFor::kTrain || what == PreflightFor::kConfig;
  const bool eval = what == PreflightFor::kEval || (train && !d.val_list().empty());

  // Ranges the config parser leaves to the run.
  c.Expect(t.lr() > 0, "train.lr must be > 0, got " + std::to_string(t.lr()));
  c.Expect(t.weight_decay() >= 0, "train.weight_decay must be >= 0");
  c.Expect(t.warmup_steps() >= 0, "train.warmup_steps must be >= 0");
  c.Expect(t.label_smoothing() >= 0 && t.label_smoothing() < 1, "train.label_smoothing must be in [0, 1)");
  c.Expect(t.grad_clip() >= 0, "train.grad_clip must be >= 0 (0: off)");
  c.Expect(t.save_freq() >= 0 && t.eval_freq() >= 0, "train.save_freq and train.eval_freq must be >= 0 (0: off)");
  c.Expect(t.keep_last() >= 1, "train.keep_last must be >= 1");
  c.Expect(config.model().cls_dropout() >= 0 && config.model().cls_dropout() < 1, "model.cls_dropout must be in [0, 1)");
  c.Expect(d.random_resized_crop_min_scale() > 0 && d.random_resized_crop_min_scale() <= 1,
           "data.random_resized_crop_min_scale must be in (0, 1]");
  c.Expect(std::all_of(d.std().begin(), d.std().end(), [](float s) { return s > 0; }),
           "data.std must be > 0 in every channel (it divides the pixels)");
  c.Expect(config.eval().batch_size() >= 1, "eval.batch_size must be >= 1");
  if (train && world > 0)
    c.Expect(t.batch_size() % (world * t.batch_split()) == 0,
             "train.batch_size " + std::to_string(t.batch_size()) + " must divide by the " + std::to_string(world) +
                 " rank(s) x train.batch_split " + std::to_string(t.batch_split()));
  if (train && !d.auto_augment().empty()) {
    try {
      ParseRandAugment(d.auto_augment());
    } catch (const std::exception& e) {
      c.problems.push_back(std::string("data.") + e.what());
    }
  }
  // Test views resize the short side to spatial_size, then crop the backbone's input size.
  if (eval || what == PreflightFor::kPredict)
    c.Expect(d.spatial_size() >= config.model().backbone().input_size(),
             "data.spatial_size " + std::to_string(d.spatial_size()) + " is below the backbone's input size " +
                 std::to_string(config.model().backbone().input_size()) + " (model.backbone " +
                 config.model().backbone().preset() + "): the test views cannot be cropped");

  // Files.
  c.File("model.backbone.weights", config.model().backbone().weights());
  c.Directory("data.data_root", d.data_root());
  c.Directory("data.val_data_root", d.val_data_root());
  if (train) {
    if (d.train_list().empty())
      c.Expect(d.synthetic().enabled(),
               "data.train_list is empty: give the training list (an unset variable in a job script?), or train on "
               "the synthetic dataset on purpose with data.synthetic.enabled: true");
    c.List("data.train_list", d.train_list(), d.data_root(), classes);
  }
  if (eval) {
    // With the synthetic dataset the lists are filled in when the job starts.
    c.Expect(!d.val_list().empty() || (d.train_list().empty() && d.synthetic().enabled()),
             "data.val_list is empty: nothing to evaluate");
    const ClipDatasetOptions v = DatasetOptionsFromConfig(config, /*train=*/false);
    c.List("data.val_list", v.list_path, v.data_root, classes);
  }
  if (!d.class_map().empty()) {
    if (!IsFile(d.class_map())) {
      c.problems.push_back("data.class_map: no such file: " + d.class_map());
    } else {
      try {
        LoadClassNames(d.class_map(), classes);
      } catch (const std::exception& e) {
        c.problems.push_back(std::string("data.class_map: ") + e.what());
      }
    }
  }
  return c.problems;
}

std::string PreflightReport(const std::vector<std::string>& problems) {
  std::string out = std::to_string(problems.size()) + " problem(s) found before starting:";
  for (const auto& p : problems) out += "\n  - " + p;
  return out;
}

}  // namespace evl
