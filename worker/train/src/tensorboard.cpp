#include "evl/tensorboard.h"

#include <unistd.h>

#include <chrono>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "evl/crc32c.h"
#include "tensorboard.pb.h"

namespace evl {
namespace {

double Now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace

uint32_t MaskCrc(uint32_t crc) { return ((crc >> 15) | (crc << 17)) + 0xa282ead8u; }

TensorBoardWriter::TensorBoardWriter(const std::string& dir) {
  char host[256] = "localhost";
  gethostname(host, sizeof host - 1);
  path_ = dir + "/events.out.tfevents." + std::to_string(static_cast<int64_t>(Now())) + "." + host;
  out_.open(path_, std::ios::binary);
  if (!out_) throw std::runtime_error(path_ + ": cannot create TensorBoard event file");
  tb::Event e;
  e.set_wall_time(Now());
  e.set_file_version("brain.Event:2");
  WriteRecord(e.SerializeAsString());
}

void TensorBoardWriter::AddScalar(const std::string& tag, float value, int64_t step) {
  tb::Event e;
  e.set_wall_time(Now());
  e.set_step(step);
  auto* v = e.mutable_summary()->add_value();
  v->set_tag(tag);
  v->set_simple_value(value);
  WriteRecord(e.SerializeAsString());
}

void TensorBoardWriter::AddSessionStart(int64_t step) {
  tb::Event e;
  e.set_wall_time(Now());
  e.set_step(step);
  e.mutable_session_log()->set_status(tb::SessionLog::START);
  WriteRecord(e.SerializeAsString());
}

void TensorBoardWriter::Flush() { out_.flush(); }

void TensorBoardWriter::WriteRecord(const std::string& data) {
  const uint64_t len = data.size();
  const uint32_t len_crc = MaskCrc(Crc32c(&len, sizeof len));
  const uint32_t data_crc = MaskCrc(Crc32c(data.data(), data.size()));
  out_.write(reinterpret_cast<const char*>(&len), 8);
  out_.write(reinterpret_cast<const char*>(&len_crc), 4);
  out_.write(data.data(), static_cast<std::streamsize>(data.size()));
  out_.write(reinterpret_cast<const char*>(&data_crc), 4);
}

std::vector<ScalarEvent> ReadTensorBoardScalars(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(path + ": cannot open");
  std::vector<ScalarEvent> out;
  while (true) {
    uint64_t len = 0;
    uint32_t len_crc = 0, data_crc = 0;
    if (!in.read(reinterpret_cast<char*>(&len), 8)) break;
    in.read(reinterpret_cast<char*>(&len_crc), 4);
    if (!in || MaskCrc(Crc32c(&len, 8)) != len_crc || len > (1u << 26))
      throw std::runtime_error(path + ": bad record length");
    std::string data(len, '\0');
    in.read(data.data(), static_cast<std::streamsize>(len));
    in.read(reinterpret_cast<char*>(&data_crc), 4);
    if (!in || MaskCrc(Crc32c(data.data(), data.size())) != data_crc)
      throw std::runtime_error(path + ": bad record crc");
    tb::Event e;
    if (!e.ParseFromString(data)) throw std::runtime_error(path + ": record is not an Event");
    if (e.has_summary())
      for (const auto& v : e.summary().value())
        if (v.value_case() == tb::SummaryValue::kSimpleValue) out.push_back({v.tag(), v.simple_value(), e.step()});
  }
  return out;
}

}  // namespace evl
