#include "evl/file_util.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <system_error>

namespace evl {
namespace {

namespace fs = std::filesystem;

std::runtime_error Failure(const std::string& path, const std::string& what) {
  return std::runtime_error(path + ": " + what + ": " + std::strerror(errno));
}

void FsyncDirectory(const fs::path& dir) {
  const int fd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd < 0) return;  // some filesystems do not open directories; the rename itself stands
  ::fsync(fd);
  ::close(fd);
}

}  // namespace

void WriteFileAtomically(const std::string& path, const std::function<void(const ByteSink&)>& produce) {
  const fs::path target(path);
  if (target.has_parent_path()) MakeDirectories(target.parent_path().string());
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw Failure(tmp, "cannot create");
  try {
    produce([&](const void* data, size_t n) {
      const char* p = static_cast<const char*>(data);
      while (n > 0) {
        const ssize_t w = ::write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) throw Failure(tmp, "write failed");
        p += w;
        n -= static_cast<size_t>(w);
      }
    });
    if (::fsync(fd) != 0) throw Failure(tmp, "fsync failed");
    const int closed = ::close(fd);
    fd = -1;
    if (closed != 0) throw Failure(tmp, "close failed");
  } catch (...) {
    if (fd >= 0) ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const auto error = Failure(path, "rename failed");
    ::unlink(tmp.c_str());
    throw error;
  }
  FsyncDirectory(target.parent_path());
}

void WriteFileAtomically(const std::string& path, std::string_view bytes) {
  WriteFileAtomically(path, [&](const ByteSink& sink) { sink(bytes.data(), bytes.size()); });
}

void MakeDirectories(const std::string& path) {
  std::error_code ec;
  fs::create_directories(path, ec);
  if (ec) throw std::runtime_error(path + ": cannot create the directory: " + ec.message());
}

bool PathExists(const std::string& path) {
  std::error_code ec;
  return fs::exists(fs::symlink_status(path, ec));
}

}  // namespace evl
