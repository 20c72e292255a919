// The evl checkpoint format: bytes <-> tensors. A protobuf manifest plus raw tensor bytes, each
// tensor checksummed (crc32c); written atomically and durably (evl/file_util.h); read with full
// verification. This is the part the fuzzer drives. Format: docs/checkpoint.md.
//
// Only trainable state is stored (decoder/head parameters, AdamW state); the frozen backbone is
// referenced by preset, path and a digest of its weights file.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
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

// crc32c and size of a file (the backbone digest). Throws CheckpointError if unreadable.
std::pair<uint64_t, uint32_t> FileDigest(const std::string& path);

}  // namespace evl
