#include "evl/dataset_lists.h"

#include "evl/model_factory.h"

namespace evl {

namespace {

struct ListSource {
  std::string field;
  ClipDatasetOptions where;  // list_path, data_root (the val list's own root), num_classes
  std::vector<VideoEntry>* entries;
};

}  // namespace

DatasetLists ReadDatasetLists(const EvlConfig& config, bool train, bool val, Communicator& comm) {
  DatasetLists out;
  std::vector<ListSource> sources;
  if (train) sources.push_back({"data.train_list", DatasetOptionsFromConfig(config, true), &out.train});
  if (val && !config.data().val_list().empty())
    sources.push_back({"data.val_list", DatasetOptionsFromConfig(config, false), &out.val});
  for (const ListSource& s : sources) {
    // Rank 0 sends 'L' and the list's bytes, or 'E' and why it could not read them. Every rank
    // parses the same bytes alike, so a bad line is found by all at once, rank 0 not first.
    std::string message;
    if (comm.rank() == 0) {
      try {
        message = "L" + ReadListFile(s.where.list_path);
      } catch (const DataError& e) {
        message = std::string("E") + e.what();
      }
    }
    message = comm.BroadcastString(message, 0, s.field, config.dist().checkpoint_timeout_s());
    try {
      if (message[0] == 'E') throw DataError(message.substr(1));
      *s.entries = ParseVideoList(message.substr(1), s.where.list_path, s.where.data_root, s.where.num_classes);
    } catch (const DataError& e) {
      out.problems.push_back(s.field + ": " + e.what());
    }
  }
  return out;
}

}  // namespace evl
