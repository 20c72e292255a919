// A run's checkpoints on disk: the layout (RUN_DIR/checkpoints/ckpt-<step>.evlckpt, `latest`,
// best.evlckpt), choosing the one to resume from, retention, and the background writer.
#pragma once

#include <condition_variable>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "evl/checkpoint_format.h"

namespace evl {

// RUN_DIR/checkpoints/ckpt-<step>.evlckpt
std::string CheckpointPath(const std::string& run_dir, int64_t step);
// Checkpoint files of a run, newest step first; none when RUN_DIR/checkpoints does not exist.
// Throws CheckpointError naming the directory and the system's reason when it exists but cannot be
// read (permissions, I/O errors, a file in its place).
std::vector<std::string> ListCheckpoints(const std::string& run_dir);
// The newest checkpoint that verifies; "" if none. Invalid ones are described in `*skipped`.
std::string FindNewestValidCheckpoint(const std::string& run_dir, std::vector<std::string>* skipped);

// RUN_DIR/checkpoints/best.evlckpt: the best evaluation so far; retention never deletes it.
std::string BestCheckpointPath(const std::string& run_dir);

// A run resumed from step `step` while the run directory holds checkpoints of later steps: those
// belong to the abandoned continuation. Moves them into RUN_DIR/checkpoints/superseded-<step>/ so
// that neither retention nor a later auto-resume confuses them with this run's; nothing is deleted.
// `latest` then names the newest checkpoint left. Returns the files moved.
std::vector<std::string> SetAsideCheckpointsAfter(const std::string& run_dir, int64_t step);

// Deletes what writes killed mid-way left in RUN_DIR/checkpoints (`*.tmp.<pid>`: never a complete
// checkpoint). Only for the job that owns the run directory. Returns the files deleted.
std::vector<std::string> RemoveUnfinishedWrites(const std::string& run_dir);

// One background writer. Save() and SaveBest() hand over a host copy and return at once: a save
// must never hold up the training thread while the other ranks wait in a collective under the
// stall timeout. One write is in flight; behind it waits at most one rotating checkpoint and one
// best: a newer one of the same kind replaces a waiting one (logged: the filesystem is slower than
// train.save_freq), so memory stays bounded. After a successful Save it updates
// RUN_DIR/checkpoints/latest atomically (fsync) and deletes all but the newest keep_last files of
// steps up to the one just written (never the file just written); SaveBest replaces best.evlckpt
// and touches nothing else. A failed write is logged and never touches older files.
class AsyncCheckpointer {
 public:
  AsyncCheckpointer(std::string run_dir, int keep_last);
  // Waits for the writes handed over.
  ~AsyncCheckpointer();
  AsyncCheckpointer(const AsyncCheckpointer&) = delete;
  AsyncCheckpointer& operator=(const AsyncCheckpointer&) = delete;

  void Save(CheckpointState state);
  void SaveBest(CheckpointState state);
  // Blocks until every write handed over is done. Returns false if the last rotating checkpoint
  // (the run's state to resume from) failed; LastError() says why.
  bool Wait();
  std::string LastError();

 private:
  struct Job {
    CheckpointState state;
    bool best = false;
  };
  void Loop();
  void Enqueue(CheckpointState state, bool best);
  // `latest` names `path`; retention among the steps up to `step`.
  void Publish(const std::string& path, int64_t step);
  std::string run_dir_;
  int keep_last_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::optional<Job> waiting_, waiting_best_;
  bool busy_ = false, stop_ = false;
  std::string error_;  // of the last rotating checkpoint
  std::thread thread_;
};

}  // namespace evl
