#include "evl/dataset_lists.h"

namespace evl {

namespace {

struct ListSource {
  std::string field, path, root;
  std::vector<VideoEntry>* entries;
};

}  // namespace

DatasetLists ReadDatasetLists(const EvlConfig& config, bool train, bool val, Communicator& comm) {
  const DataConfig& d = config.data();
  DatasetLists out;
  std::vector<ListSource> sources;
  if (train) sources.push_back({"data.train_list", d.train_list(), d.data_root(), &out.train});
  if (val && !d.val_list().empty())
    sources.push_back({"data.val_list", d.val_list(), d.val_data_root().empty() ? d.data_root() : d.val_data_root(),
                       &out.val});
  const int classes = config.model().num_classes();
  for (const ListSource& s : sources) {
    // Rank 0 sends 'L' and the list's bytes, or 'E' and why it could not read them. Every rank
    // parses the same bytes alike, so a bad line is found by all at once, rank 0 not first.
    std::string message;
    if (comm.rank() == 0) {
      try {
        message = "L" + ReadListFile(s.path);
      } catch (const DataError& e) {
        message = std::string("E") + e.what();
      }
    }
    message = comm.BroadcastString(message, 0, s.field, config.dist().checkpoint_timeout_s());
    try {
      if (message[0] == 'E') throw DataError(message.substr(1));
      *s.entries = ParseVideoList(message.substr(1), s.path, s.root, classes);
    } catch (const DataError& e) {
      out.problems.push_back(s.field + ": " + e.what());
    }
  }
  return out;
}

}  // namespace evl
