// evl checkpoints: a protobuf manifest plus raw tensor bytes, each tensor checksummed (crc32c);
// written atomically (temporary name in the same directory, fsync, rename, directory fsync) by one
// background thread; read with full verification. Format: docs/checkpoint.md.
//
// Only trainable state is stored (decoder/head parameters, AdamW state); the frozen backbone is
// referenced by preset, path and a digest of its weights file.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <ATen/core/Tensor.h>

namespace evl {

class CheckpointError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct CheckpointState {
  int64_t step = 0;  // the next step to run
  int world_size = 1;
  int64_t seed = 0;
  double lr = 0;
  std::string config_text;
  std::string backbone_preset, backbone_weights;
  uint64_t backbone_bytes = 0;
  uint32_t backbone_crc32c = 0;
  int64_t backbone_init_seed = 0;
  std::vector<std::pair<std::string, at::Tensor>> tensors;  // CPU, contiguous
};

constexpr char kCheckpointMagic[] = "EVLCKPT1";

// Writes `state` to `path` atomically: nothing at `path` changes unless the whole new file is
// durable. Throws CheckpointError naming the path (disk full, permission) and leaves no temp file.
void WriteCheckpointFile(const std::string& path, const CheckpointState& state);

// Reads and verifies every tensor's crc32c. Throws CheckpointError naming the file and, for data
// errors, the tensor.
CheckpointState ReadCheckpointFile(const std::string& path);
CheckpointState ReadCheckpointBuffer(const std::string& bytes, const std::string& name);

// RUN_DIR/checkpoints/ckpt-<step>.evlckpt
std::string CheckpointPath(const std::string& run_dir, int64_t step);
// Checkpoint files of a run, newest step first.
std::vector<std::string> ListCheckpoints(const std::string& run_dir);
// The newest checkpoint that verifies; "" if none. Invalid ones are described in `*skipped`.
std::string FindNewestValidCheckpoint(const std::string& run_dir, std::vector<std::string>* skipped);

// mkdir -p.
void MakeDirectories(const std::string& path);
// Whether anything exists at `path`.
bool PathExists(const std::string& path);

// crc32c and size of a file (the backbone digest). Throws CheckpointError if unreadable.
std::pair<uint64_t, uint32_t> FileDigest(const std::string& path);

// One background writer: Save() hands over a host copy and returns; at most one save in flight
// (the next Save or Wait blocks until the previous one finished). After a successful write it
// updates RUN_DIR/checkpoints/latest atomically and deletes all but the newest keep_last files.
// A failed write is logged and reported by the next Save/Wait (LastError), never touching older files.
class AsyncCheckpointer {
 public:
  AsyncCheckpointer(std::string run_dir, int keep_last);
  ~AsyncCheckpointer();
  AsyncCheckpointer(const AsyncCheckpointer&) = delete;
  AsyncCheckpointer& operator=(const AsyncCheckpointer&) = delete;

  void Save(CheckpointState state);
  // Blocks until no save is in flight. Returns false if the last save failed.
  bool Wait();
  std::string LastError();
  double last_write_s() const { return last_write_s_; }

 private:
  void Loop();
  std::string run_dir_;
  int keep_last_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool has_job_ = false, busy_ = false, stop_ = false;
  CheckpointState job_;
  std::string error_;
  double last_write_s_ = 0;
  std::thread thread_;
};

}  // namespace evl
