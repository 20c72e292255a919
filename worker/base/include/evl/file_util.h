// Files: the one way evl replaces a file, and the small directory helpers every library needs.
//
// Every file another process may read while evl runs (checkpoints, `latest`, metrics snapshots,
// rendered batch scripts, prepared videos' lists) is replaced atomically and durably: the bytes go
// to a temporary name in the same directory, are fsynced, renamed over the target, and the
// directory is fsynced. A reader sees the old file or the new one, and after a crash the new one
// only if it was complete.
#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <string_view>

namespace evl {

// Receives the next bytes of a file being written.
using ByteSink = std::function<void(const void* data, size_t n)>;

// Writes what `produce` hands its sink to `path`, atomically and durably (see above). Creates the
// parent directories. Throws std::runtime_error naming the path and the system's reason; leaves no
// temporary file behind and `path` untouched on any failure, including an exception from `produce`.
void WriteFileAtomically(const std::string& path, const std::function<void(const ByteSink&)>& produce);
void WriteFileAtomically(const std::string& path, std::string_view bytes);

// mkdir -p; throws std::runtime_error naming the path if it cannot be created.
void MakeDirectories(const std::string& path);
// Whether anything exists at `path`.
bool PathExists(const std::string& path);

}  // namespace evl
