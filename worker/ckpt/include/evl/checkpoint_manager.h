// A run's checkpoints on disk: the layout (RUN_DIR/checkpoints/ckpt-<step>.evlckpt, `latest`,
// best.evlckpt), choosing the one to resume from, retention, and the background writer.
#pragma once

#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "evl/checkpoint_format.h"

namespace evl {

// RUN_DIR/checkpoints/ckpt-<step>.evlckpt
std::string CheckpointPath(const std::string& run_dir, int64_t step);
// Checkpoint files of a run, newest step first.
std::vector<std::string> ListCheckpoints(const std::string& run_dir);
// The newest checkpoint that verifies; "" if none. Invalid ones are described in `*skipped`.
std::string FindNewestValidCheckpoint(const std::string& run_dir, std::vector<std::string>* skipped);

// RUN_DIR/checkpoints/best.evlckpt: the best evaluation so far; retention never deletes it.
std::string BestCheckpointPath(const std::string& run_dir);

// A run resumed from step `step` while the run directory holds checkpoints of later steps: those
// belong to the abandoned continuation. Moves them into RUN_DIR/checkpoints/superseded-<step>/ so
// that neither retention nor a later auto-resume confuses them with this run's; nothing is deleted.
// Returns the files moved.
std::vector<std::string> SetAsideCheckpointsAfter(const std::string& run_dir, int64_t step);

// One background writer: Save() and SaveBest() hand over a host copy and return; at most one save
// in flight (the next Save, SaveBest or Wait blocks until the previous one finished). After a
// successful Save it updates RUN_DIR/checkpoints/latest atomically (fsync) and deletes all but the
// newest keep_last files of steps up to the one just written (never the file just written);
// SaveBest replaces best.evlckpt and touches nothing else.
// A failed write is logged and reported by the next Save/Wait (LastError), never touching older files.
class AsyncCheckpointer {
 public:
  AsyncCheckpointer(std::string run_dir, int keep_last);
  ~AsyncCheckpointer();
  AsyncCheckpointer(const AsyncCheckpointer&) = delete;
  AsyncCheckpointer& operator=(const AsyncCheckpointer&) = delete;

  void Save(CheckpointState state);
  void SaveBest(CheckpointState state);
  // Blocks until no save is in flight. Returns false if the last save failed.
  bool Wait();
  std::string LastError();

 private:
  void Loop();
  void Enqueue(CheckpointState state, bool best);
  // `latest` names `path`; retention among the steps up to `step`.
  void Publish(const std::string& path, int64_t step);
  std::string run_dir_;
  int keep_last_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool has_job_ = false, busy_ = false, stop_ = false;
  bool job_is_best_ = false;
  CheckpointState job_;
  std::string error_;
  std::thread thread_;
};

}  // namespace evl
