// A job's dataset lists, read from shared storage once per job: rank 0 reads and checks each list
// and broadcasts its bytes; the other ranks parse those bytes. At 512 ranks and a 240,000-line
// Kinetics list that is one read of the shared filesystem instead of 512 at the same moment, and
// the validation list is read once per job rather than at every evaluation (the caller keeps it).
#pragma once

#include <string>
#include <vector>

#include "evl/communicator.h"
#include "evl/video_list.h"
#include "evl_config.pb.h"

namespace evl {

struct DatasetLists {
  std::vector<VideoEntry> train, val;  // val stays empty when there is no data.val_list
  // What stops the job, worded as preflight words it ("data.train_list: LIST:LINE: ..."); the same
  // on every rank, so every rank can return the same status.
  std::vector<std::string> problems;
};

// Reads data.train_list when `train`, and data.val_list when `val` and it is set (relative paths
// joined to data.data_root, or data.val_data_root for the validation list). Collective: every rank
// calls it; the others wait for rank 0's read within dist.checkpoint_timeout_s (storage, not a
// stall).
DatasetLists ReadDatasetLists(const EvlConfig& config, bool train, bool val, Communicator& comm);

}  // namespace evl
