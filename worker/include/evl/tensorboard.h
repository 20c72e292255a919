// TensorBoard scalar summaries: `events.out.tfevents.*` files of TFRecord-framed `Event` protobufs
// (length, masked crc32c of the length, data, masked crc32c of the data).
#pragma once

#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

namespace evl {

// CRC-32C (Castagnoli). Written here: Debian 12 has no C++ crc32c library (abseil predates
// absl/crc); see docs/training.md.
uint32_t Crc32c(const void* data, size_t n);
// Continues a crc32c over more bytes: Crc32cExtend(Crc32c(a), b) == Crc32c(a + b).
uint32_t Crc32cExtend(uint32_t crc, const void* data, size_t n);
// The table-driven version used where the CPU lacks SSE4.2's crc32 instruction (tests compare them).
uint32_t Crc32cExtendPortable(uint32_t crc, const void* data, size_t n);
// TFRecord's masking of a crc.
uint32_t MaskCrc(uint32_t crc);

class TensorBoardWriter {
 public:
  // Creates DIR/events.out.tfevents.<time>.<host> and writes the file_version event.
  explicit TensorBoardWriter(const std::string& dir);
  void AddScalar(const std::string& tag, float value, int64_t step);
  void Flush();
  const std::string& path() const { return path_; }

 private:
  void WriteRecord(const std::string& data);
  std::string path_;
  std::ofstream out_;
};

struct ScalarEvent {
  std::string tag;
  float value;
  int64_t step;
};

// Reads back every scalar; throws std::runtime_error naming the file on a bad length or crc.
std::vector<ScalarEvent> ReadTensorBoardScalars(const std::string& path);

}  // namespace evl
