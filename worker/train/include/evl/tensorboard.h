// TensorBoard scalar summaries: `events.out.tfevents.*` files of TFRecord-framed `Event` protobufs
// (length, masked crc32c of the length, data, masked crc32c of the data).
#pragma once

#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

namespace evl {

// TFRecord's masking of a crc.
uint32_t MaskCrc(uint32_t crc);

class TensorBoardWriter {
 public:
  // Creates DIR/events.out.tfevents.<time>.<host> and writes the file_version event.
  explicit TensorBoardWriter(const std::string& dir);
  void AddScalar(const std::string& tag, float value, int64_t step);
  // A restart at `step`: TensorBoard hides what earlier event files logged at steps >= `step`.
  void AddSessionStart(int64_t step);
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
