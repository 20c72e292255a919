#include "evl/checkpoint.h"

#include <dirent.h>
#include <fcntl.h>
#include <glog/logging.h>
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
#include "evl/tensorboard.h"  // Crc32c

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

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }
  int release() {
    int f = fd_;
    fd_ = -1;
    return f;
  }

 private:
  int fd_;
};

void WriteAll(int fd, const void* data, size_t n, const std::string& path) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      throw CheckpointError(path + ": write failed: " + std::strerror(errno));
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
}

std::string DirOf(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  return slash == std::string::npos ? "." : path.substr(0, slash);
}

void FsyncDir(const std::string& dir) {
  Fd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY));
  if (fd.get() >= 0) ::fsync(fd.get());
}

int64_t StepOf(const std::string& name) {
  if (name.rfind("ckpt-", 0) != 0 || name.size() < 14 || name.substr(name.size() - 8) != ".evlckpt") return -1;
  try {
    return std::stoll(name.substr(5, name.size() - 13));
  } catch (...) {
    return -1;
  }
}

}  // namespace

bool PathExists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

void MakeDirectories(const std::string& path) {
  std::string cur;
  std::stringstream ss(path);
  std::string part;
  if (!path.empty() && path[0] == '/') cur = "/";
  while (std::getline(ss, part, '/')) {
    if (part.empty()) continue;
    cur += part + "/";
    ::mkdir(cur.c_str(), 0755);
  }
}

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
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  MakeDirectories(DirOf(path));
  Fd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644));
  if (fd.get() < 0) throw CheckpointError(tmp + ": cannot create: " + std::strerror(errno));
  const char* slow = std::getenv("EVL_TEST_SLOW_CHECKPOINT_MS");  // test hook: widen the crash window
  try {
    const uint64_t mlen = manifest.size();
    const uint32_t mcrc = Crc32c(manifest.data(), manifest.size());
    WriteAll(fd.get(), kCheckpointMagic, 8, tmp);
    WriteAll(fd.get(), &mlen, 8, tmp);
    WriteAll(fd.get(), &mcrc, 4, tmp);
    WriteAll(fd.get(), manifest.data(), manifest.size(), tmp);
    const uint64_t header = 20 + manifest.size();
    const std::string pad(kAlign, '\0');
    WriteAll(fd.get(), pad.data(), AlignUp(header) - header, tmp);
    uint64_t written = 0;
    for (int i = 0; i < m.tensors_size(); ++i) {
      const auto& e = m.tensors(i);
      WriteAll(fd.get(), pad.data(), e.offset() - written, tmp);
      WriteAll(fd.get(), data[i].data_ptr(), e.length(), tmp);
      written = e.offset() + e.length();
      if (slow) std::this_thread::sleep_for(std::chrono::milliseconds(std::atoi(slow)));
    }
    if (::fsync(fd.get()) != 0) throw CheckpointError(tmp + ": fsync failed: " + std::strerror(errno));
    ::close(fd.release());
    if (::rename(tmp.c_str(), path.c_str()) != 0)
      throw CheckpointError(path + ": rename failed: " + std::strerror(errno));
    FsyncDir(DirOf(path));
  } catch (...) {
    ::unlink(tmp.c_str());
    throw;
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
  Fd fd(::open(path.c_str(), O_RDONLY));
  if (fd.get() < 0) throw CheckpointError(path + ": cannot open checkpoint: " + std::strerror(errno));
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) throw CheckpointError(path + ": cannot stat: " + std::strerror(errno));
  const size_t size = static_cast<size_t>(st.st_size);
  std::shared_ptr<void> buf(std::aligned_alloc(kAlign, AlignUp(std::max<size_t>(size, 1))), std::free);
  if (!buf) throw CheckpointError(path + ": cannot allocate " + std::to_string(size) + " bytes");
  char* p = static_cast<char*>(buf.get());
  size_t got = 0;
  while (got < size) {
    const ssize_t n = ::read(fd.get(), p + got, size - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw CheckpointError(path + ": read failed: " + std::strerror(errno));
    if (n == 0) break;  // the file shrank under us: parsing reports the truncation
    got += static_cast<size_t>(n);
  }
  return ParseCheckpoint(p, got, path, buf);
}

std::string CheckpointPath(const std::string& run_dir, int64_t step) {
  char name[64];
  std::snprintf(name, sizeof name, "/checkpoints/ckpt-%08ld.evlckpt", static_cast<long>(step));
  return run_dir + name;
}

std::vector<std::string> ListCheckpoints(const std::string& run_dir) {
  std::vector<std::pair<int64_t, std::string>> found;
  const std::string dir = run_dir + "/checkpoints";
  if (DIR* d = opendir(dir.c_str())) {
    while (dirent* e = readdir(d)) {
      const int64_t step = StepOf(e->d_name);
      if (step >= 0) found.emplace_back(step, dir + "/" + e->d_name);
    }
    closedir(d);
  }
  std::sort(found.rbegin(), found.rend());
  std::vector<std::string> out;
  for (auto& f : found) out.push_back(f.second);
  return out;
}

std::string FindNewestValidCheckpoint(const std::string& run_dir, std::vector<std::string>* skipped) {
  for (const auto& path : ListCheckpoints(run_dir)) {
    try {
      ReadCheckpointFile(path);
      return path;
    } catch (const CheckpointError& e) {
      if (skipped) skipped->push_back(e.what());
    }
  }
  return "";
}

AsyncCheckpointer::AsyncCheckpointer(std::string run_dir, int keep_last)
    : run_dir_(std::move(run_dir)), keep_last_(std::max(1, keep_last)), thread_([this] { Loop(); }) {}

AsyncCheckpointer::~AsyncCheckpointer() {
  {
    std::unique_lock<std::mutex> l(mu_);
    cv_.wait(l, [&] { return !has_job_ && !busy_; });
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void AsyncCheckpointer::Save(CheckpointState state) {
  std::unique_lock<std::mutex> l(mu_);
  cv_.wait(l, [&] { return !has_job_ && !busy_; });
  job_ = std::move(state);
  has_job_ = true;
  cv_.notify_all();
}

bool AsyncCheckpointer::Wait() {
  std::unique_lock<std::mutex> l(mu_);
  cv_.wait(l, [&] { return !has_job_ && !busy_; });
  return error_.empty();
}

std::string AsyncCheckpointer::LastError() {
  std::lock_guard<std::mutex> l(mu_);
  return error_;
}

void AsyncCheckpointer::Loop() {
  while (true) {
    CheckpointState job;
    {
      std::unique_lock<std::mutex> l(mu_);
      cv_.wait(l, [&] { return stop_ || has_job_; });
      if (!has_job_) return;
      job = std::move(job_);
      has_job_ = false;
      busy_ = true;
    }
    std::string error;
    const auto t0 = std::chrono::steady_clock::now();
    const std::string path = CheckpointPath(run_dir_, job.step);
    try {
      WriteCheckpointFile(path, job);
      // The `latest` pointer: its own atomic replace.
      const std::string latest = run_dir_ + "/checkpoints/latest", tmp = latest + ".tmp";
      { std::ofstream(tmp) << path.substr(path.find_last_of('/') + 1) << "\n"; }
      ::rename(tmp.c_str(), latest.c_str());
      // Retention only after the new file is durable.
      auto all = ListCheckpoints(run_dir_);
      for (size_t i = static_cast<size_t>(keep_last_); i < all.size(); ++i) ::unlink(all[i].c_str());
      LOG(INFO) << "checkpoint saved: " << path;
    } catch (const std::exception& e) {
      error = e.what();
      LOG(ERROR) << "checkpoint NOT saved (older checkpoints untouched): " << error;
    }
    std::lock_guard<std::mutex> l(mu_);
    error_ = error;
    last_write_s_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    busy_ = false;
    cv_.notify_all();
  }
}

}  // namespace evl
