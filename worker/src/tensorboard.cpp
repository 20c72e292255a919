#include "evl/tensorboard.h"

#include <unistd.h>

#include <chrono>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "tensorboard.pb.h"

namespace evl {
namespace {

const uint32_t* Table() {
  static const auto table = [] {
    std::vector<uint32_t> t(256);
    for (uint32_t n = 0; n < 256; ++n) {
      uint32_t c = n;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0x82F63B78u ^ (c >> 1) : c >> 1;
      t[n] = c;
    }
    return t;
  }();
  return table.data();
}

// crc32c is the polynomial of SSE4.2's crc32 instruction: ~20x the table's speed, which is what
// lets a checkpoint of hundreds of MB verify at disk speed (docs/benchmarks.md).
#if defined(__x86_64__)
__attribute__((target("sse4.2"))) uint32_t Crc32cHardware(uint32_t c, const uint8_t* p, size_t n) {
  uint64_t c64 = c;
  for (; n >= 8; n -= 8, p += 8) {
    uint64_t v;
    std::memcpy(&v, p, 8);
    c64 = __builtin_ia32_crc32di(c64, v);
  }
  c = static_cast<uint32_t>(c64);
  for (; n > 0; --n, ++p) c = __builtin_ia32_crc32qi(c, *p);
  return c;
}

bool HaveSse42() {
  static const bool yes = __builtin_cpu_supports("sse4.2");
  return yes;
}
#endif

double Now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace

uint32_t Crc32cExtend(uint32_t crc, const void* data, size_t n) {
  const auto* p = static_cast<const uint8_t*>(data);
  uint32_t c = crc ^ 0xFFFFFFFFu;
#if defined(__x86_64__)
  if (HaveSse42()) return Crc32cHardware(c, p, n) ^ 0xFFFFFFFFu;
#endif
  return Crc32cExtendPortable(crc, data, n);
}

uint32_t Crc32cExtendPortable(uint32_t crc, const void* data, size_t n) {
  const auto* p = static_cast<const uint8_t*>(data);
  uint32_t c = crc ^ 0xFFFFFFFFu;
  const uint32_t* table = Table();
  for (size_t i = 0; i < n; ++i) c = table[(c ^ p[i]) & 0xFF] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

uint32_t Crc32c(const void* data, size_t n) { return Crc32cExtend(0, data, n); }

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
