#include "evl/checkpoint_format.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <torch/torch.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>
#include <string_view>

#include "checkpoint.pb.h"
#include "evl/crc32c.h"
#include "evl/fault_injection.h"
#include "evl/file_util.h"

namespace evl {
namespace {

constexpr uint32_t kFormatVersion = 1;
constexpr uint64_t kAlign = 64;

uint64_t AlignUp(uint64_t x) { return (x + kAlign - 1) / kAlign * kAlign; }

const char* DtypeName(c10::ScalarType t) {
  switch (t) {
    case torch::kFloat: return "float32";
    case torch::kDouble: return "float64";
    case torch::kHalf: return "float16";
    case torch::kBFloat16: return "bfloat16";
    case torch::kLong: return "int64";
    case torch::kInt: return "int32";
    case torch::kByte: return "uint8";
    case torch::kBool: return "bool";
    default: throw CheckpointError(std::string("checkpoint: unsupported dtype ") + c10::toString(t));
  }
}

bool DtypeFromName(const std::string& n, c10::ScalarType* t) {
  static const std::pair<const char*, c10::ScalarType> m[] = {
      {"float32", torch::kFloat}, {"float64", torch::kDouble}, {"float16", torch::kHalf}, {"bfloat16", torch::kBFloat16},
      {"int64", torch::kLong},    {"int32", torch::kInt},      {"uint8", torch::kByte},   {"bool", torch::kBool}};
  for (const auto& [name, type] : m)
    if (n == name) {
      *t = type;
      return true;
    }
  return false;
}

}  // namespace

std::pair<uint64_t, uint32_t> FileDigest(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw CheckpointError(path + ": cannot read");
  std::vector<char> buf(1 << 20);
  uint64_t bytes = 0;
  uint32_t crc = 0;
  while (in.read(buf.data(), static_cast<std::streamsize>(buf.size())) || in.gcount() > 0) {
    crc = Crc32cExtend(crc, buf.data(), static_cast<size_t>(in.gcount()));
    bytes += static_cast<uint64_t>(in.gcount());
  }
  return {bytes, crc};
}

void WriteCheckpointFile(const std::string& path, const CheckpointState& state) {
  ckpt::Manifest m;
  m.set_format_version(kFormatVersion);
  m.set_config_text(state.config_text);
  m.set_step(state.step);
  m.set_world_size(state.world_size);
  m.set_seed(state.seed);
  m.set_lr(state.lr);
  m.set_wall_time(std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count());
  auto* bb = m.mutable_backbone();
  bb->set_preset(state.backbone_preset);
  bb->set_weights(state.backbone_weights);
  bb->set_weights_bytes(state.backbone_bytes);
  bb->set_weights_crc32c(state.backbone_crc32c);
  bb->set_init_seed(state.backbone_init_seed);
  uint64_t offset = 0;
  std::vector<torch::Tensor> data;
  for (const auto& [name, tensor] : state.tensors) {
    auto t = tensor.detach().to(torch::kCPU).contiguous();
    auto* e = m.add_tensors();
    e->set_name(name);
    e->set_dtype(DtypeName(t.scalar_type()));
    for (int64_t d : t.sizes()) e->add_shape(d);
    const uint64_t len = static_cast<uint64_t>(t.numel()) * t.element_size();
    e->set_offset(offset);
    e->set_length(len);
    e->set_crc32c(Crc32c(t.data_ptr(), len));
    offset = AlignUp(offset + len);
    data.push_back(t);
  }
  const std::string manifest = m.SerializeAsString();
  try {
    WriteFileAtomically(path, [&](const ByteSink& write) {
      const uint64_t mlen = manifest.size();
      const uint32_t mcrc = Crc32c(manifest.data(), manifest.size());
      write(kCheckpointMagic, 8);
      write(&mlen, 8);
      write(&mcrc, 4);
      write(manifest.data(), manifest.size());
      const uint64_t header = 20 + manifest.size();
      const std::string pad(kAlign, '\0');
      write(pad.data(), AlignUp(header) - header);
      uint64_t written = 0;
      for (int i = 0; i < m.tensors_size(); ++i) {
        const auto& e = m.tensors(i);
        write(pad.data(), e.offset() - written);
        write(data[i].data_ptr(), e.length());
        written = e.offset() + e.length();
        Faults().DuringCheckpointWrite();
      }
    });
  } catch (const CheckpointError&) {
    throw;
  } catch (const std::exception& e) {
    throw CheckpointError(e.what());
  }
}

namespace {

// Parses and verifies a whole checkpoint in memory. With `keepalive` (the owner of `data`), tensors
// are views into it: no copy, and the buffer lives as long as any tensor does.
CheckpointState ParseCheckpoint(const char* data, size_t size, const std::string& name,
                                const std::shared_ptr<void>& keepalive) {
  const std::string_view bytes(data, size);
  auto fail = [&](const std::string& why) -> CheckpointError { return CheckpointError(name + ": " + why); };
  if (bytes.size() < 20 || std::memcmp(bytes.data(), kCheckpointMagic, 8) != 0)
    throw fail("not an evl checkpoint (bad magic or shorter than the header)");
  uint64_t mlen = 0;
  uint32_t mcrc = 0;
  std::memcpy(&mlen, bytes.data() + 8, 8);
  std::memcpy(&mcrc, bytes.data() + 16, 4);
  if (mlen > bytes.size() - 20) throw fail("manifest runs past the end of the file (truncated)");
  if (Crc32c(bytes.data() + 20, mlen) != mcrc) throw fail("manifest checksum mismatch (corrupt)");
  ckpt::Manifest m;
  if (!m.ParseFromArray(bytes.data() + 20, static_cast<int>(mlen))) throw fail("manifest does not parse");
  if (m.format_version() != kFormatVersion)
    throw fail("format version " + std::to_string(m.format_version()) + ", this evl reads " +
               std::to_string(kFormatVersion));
  const uint64_t data_start = AlignUp(20 + mlen);
  const uint64_t data_size = bytes.size() >= data_start ? bytes.size() - data_start : 0;
  CheckpointState s;
  s.step = m.step();
  s.world_size = m.world_size();
  s.seed = m.seed();
  s.lr = m.lr();
  s.config_text = m.config_text();
  s.backbone_preset = m.backbone().preset();
  s.backbone_weights = m.backbone().weights();
  s.backbone_bytes = m.backbone().weights_bytes();
  s.backbone_crc32c = m.backbone().weights_crc32c();
  s.backbone_init_seed = m.backbone().init_seed();
  for (const auto& e : m.tensors()) {
    c10::ScalarType type;
    if (!DtypeFromName(e.dtype(), &type)) throw fail("tensor '" + e.name() + "' has unknown dtype '" + e.dtype() + "'");
    std::vector<int64_t> shape(e.shape().begin(), e.shape().end());
    uint64_t numel = 1;
    for (int64_t d : shape) {
      if (d < 0 || (d > 0 && numel > (UINT64_MAX / 16) / static_cast<uint64_t>(d)))
        throw fail("tensor '" + e.name() + "' has a bad shape");
      numel *= static_cast<uint64_t>(d);
    }
    if (numel * c10::elementSize(type) != e.length()) throw fail("tensor '" + e.name() + "': length does not match shape");
    if (e.offset() > data_size || e.length() > data_size - e.offset())
      throw fail("tensor '" + e.name() + "' lies past the end of the file (truncated)");
    const char* p = bytes.data() + data_start + e.offset();
    if (Crc32c(p, e.length()) != e.crc32c()) throw fail("tensor '" + e.name() + "' checksum mismatch (corrupt)");
    torch::Tensor t;
    if (keepalive && e.length()) {
      t = torch::from_blob(const_cast<char*>(p), shape, [keepalive](void*) {}, torch::TensorOptions().dtype(type));
    } else {
      t = torch::empty(shape, torch::TensorOptions().dtype(type));
      if (e.length()) std::memcpy(t.data_ptr(), p, e.length());
    }
    s.tensors.emplace_back(e.name(), t);
  }
  return s;
}

}  // namespace

CheckpointState ReadCheckpointBuffer(const std::string& bytes, const std::string& name) {
  return ParseCheckpoint(bytes.data(), bytes.size(), name, nullptr);
}

CheckpointState ReadCheckpointFile(const std::string& path) {
  // One read into one aligned buffer that the tensors then point into: loading costs the read and
  // the checksums, not copies (docs/benchmarks.md).
  const int raw = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (raw < 0) throw CheckpointError(path + ": cannot open checkpoint: " + std::strerror(errno));
  const std::unique_ptr<int, void (*)(int*)> fd(new int(raw), [](int* f) {
    ::close(*f);
    delete f;
  });
  struct stat st;
  if (::fstat(*fd, &st) != 0) throw CheckpointError(path + ": cannot stat: " + std::strerror(errno));
  const size_t size = static_cast<size_t>(st.st_size);
  std::shared_ptr<void> buf(std::aligned_alloc(kAlign, AlignUp(std::max<size_t>(size, 1))), std::free);
  if (!buf) throw CheckpointError(path + ": cannot allocate " + std::to_string(size) + " bytes");
  char* p = static_cast<char*>(buf.get());
  size_t got = 0;
  while (got < size) {
    const ssize_t n = ::read(*fd, p + got, size - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw CheckpointError(path + ": read failed: " + std::strerror(errno));
    if (n == 0) break;  // the file shrank under us: parsing reports the truncation
    got += static_cast<size_t>(n);
  }
  return ParseCheckpoint(p, got, path, buf);
}

}  // namespace evl
