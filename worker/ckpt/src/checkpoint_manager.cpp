#include "evl/checkpoint_manager.h"

#include <glog/logging.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <system_error>

#include "evl/file_util.h"

namespace evl {
namespace {

namespace fs = std::filesystem;

int64_t StepOf(const std::string& name) {
  if (name.rfind("ckpt-", 0) != 0 || name.size() < 14 || name.substr(name.size() - 8) != ".evlckpt") return -1;
  try {
    return std::stoll(name.substr(5, name.size() - 13));
  } catch (...) {
    return -1;
  }
}

// RUN_DIR/checkpoints/latest names `checkpoint` (its file name, one line).
void PointLatestAt(const std::string& run_dir, const std::string& checkpoint) {
  WriteFileAtomically(run_dir + "/checkpoints/latest", fs::path(checkpoint).filename().string() + "\n");
}

}  // namespace

std::string CheckpointPath(const std::string& run_dir, int64_t step) {
  char name[64];
  std::snprintf(name, sizeof name, "/checkpoints/ckpt-%08ld.evlckpt", static_cast<long>(step));
  return run_dir + name;
}

std::vector<std::string> ListCheckpoints(const std::string& run_dir) {
  std::vector<std::pair<int64_t, std::string>> found;
  const std::string dir = run_dir + "/checkpoints";
  std::error_code ec;
  fs::directory_iterator it(dir, ec);
  // Only a directory that does not exist means "no checkpoint yet". Anything else (EACCES, EIO,
  // ESTALE on a shared filesystem, a file in its place) read as empty would start the run over in
  // the same directory and, as it caught up, overwrite or retire the checkpoints it could not see.
  if (ec == std::errc::no_such_file_or_directory) return {};
  if (ec) throw CheckpointError(dir + ": cannot list the checkpoints (" + ec.message() + ")");
  for (; it != fs::directory_iterator(); it.increment(ec)) {
    if (ec) throw CheckpointError(dir + ": cannot list the checkpoints (" + ec.message() + ")");
    const int64_t step = StepOf(it->path().filename().string());
    std::error_code type_ec;
    if (step >= 0 && it->is_regular_file(type_ec)) found.emplace_back(step, it->path().string());
  }
  if (ec) throw CheckpointError(dir + ": cannot list the checkpoints (" + ec.message() + ")");
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

std::string BestCheckpointPath(const std::string& run_dir) { return run_dir + "/checkpoints/best.evlckpt"; }

std::vector<std::string> SetAsideCheckpointsAfter(const std::string& run_dir, int64_t step) {
  std::vector<std::string> moved;
  const std::string aside = run_dir + "/checkpoints/superseded-" + std::to_string(step);
  for (const auto& path : ListCheckpoints(run_dir)) {
    if (StepOf(fs::path(path).filename().string()) <= step) continue;
    MakeDirectories(aside);
    const std::string to = aside + "/" + fs::path(path).filename().string();
    std::error_code ec;
    fs::rename(path, to, ec);
    if (ec) throw CheckpointError(path + ": cannot move it aside to " + to + ": " + ec.message());
    moved.push_back(path);
  }
  // `latest` must not name a file that is no longer there: it names the newest one left.
  if (!moved.empty()) {
    const auto left = ListCheckpoints(run_dir);
    if (left.empty())
      fs::remove(run_dir + "/checkpoints/latest");
    else
      PointLatestAt(run_dir, left.front());
  }
  return moved;
}

std::vector<std::string> RemoveUnfinishedWrites(const std::string& run_dir) {
  std::vector<std::string> removed;
  const std::string dir = run_dir + "/checkpoints";
  std::error_code ec;
  fs::directory_iterator it(dir, ec);
  if (ec) return removed;  // none yet; an unreadable directory is ListCheckpoints' to report
  for (; it != fs::directory_iterator(); it.increment(ec)) {
    if (ec) break;
    // WriteFileAtomically's temporaries: <name>.tmp.<pid>
    const std::string name = it->path().filename().string();
    if (name.find(".tmp.") == std::string::npos) continue;
    std::error_code rm;
    if (fs::remove(it->path(), rm)) removed.push_back(it->path().string());
  }
  return removed;
}

AsyncCheckpointer::AsyncCheckpointer(std::string run_dir, int keep_last)
    : run_dir_(std::move(run_dir)), keep_last_(std::max(1, keep_last)), thread_([this] { Loop(); }) {}

AsyncCheckpointer::~AsyncCheckpointer() {
  Wait();
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void AsyncCheckpointer::Save(CheckpointState state) { Enqueue(std::move(state), /*best=*/false); }
void AsyncCheckpointer::SaveBest(CheckpointState state) { Enqueue(std::move(state), /*best=*/true); }

void AsyncCheckpointer::Enqueue(CheckpointState state, bool best) {
  {
    std::lock_guard<std::mutex> l(mu_);
    std::optional<Job>& slot = best ? waiting_best_ : waiting_;
    if (slot)
      LOG(WARNING) << (best ? "best checkpoint" : "checkpoint") << " of step " << slot->state.step
                   << " replaced by step " << state.step << " before it could be written (the previous write is still "
                   << "in flight: the filesystem is slower than the saves come)";
    slot = Job{std::move(state), best};
  }
  cv_.notify_all();
}

bool AsyncCheckpointer::Wait() {
  std::unique_lock<std::mutex> l(mu_);
  cv_.wait(l, [&] { return !waiting_ && !waiting_best_ && !busy_; });
  return error_.empty();
}

std::string AsyncCheckpointer::LastError() {
  std::lock_guard<std::mutex> l(mu_);
  return error_;
}

void AsyncCheckpointer::Publish(const std::string& path, int64_t step) {
  PointLatestAt(run_dir_, path);
  // Retention only after the new file is durable, and only among the steps up to it: the file
  // just written is never among those deleted.
  int kept = 0;
  for (const auto& old : ListCheckpoints(run_dir_)) {
    if (StepOf(fs::path(old).filename().string()) > step) continue;
    std::error_code ec;
    if (++kept > keep_last_ && !fs::remove(old, ec) && ec) LOG(WARNING) << old << ": not deleted: " << ec.message();
  }
}

void AsyncCheckpointer::Loop() {
  while (true) {
    Job job;
    {
      std::unique_lock<std::mutex> l(mu_);
      cv_.wait(l, [&] { return stop_ || waiting_ || waiting_best_; });
      if (!waiting_ && !waiting_best_) return;
      // The state to resume from first.
      std::optional<Job>& slot = waiting_ ? waiting_ : waiting_best_;
      job = std::move(*slot);
      slot.reset();
      busy_ = true;
    }
    std::string error;
    const std::string path = job.best ? BestCheckpointPath(run_dir_) : CheckpointPath(run_dir_, job.state.step);
    try {
      WriteCheckpointFile(path, job.state);
      if (!job.best) Publish(path, job.state.step);
      LOG(INFO) << (job.best ? "best checkpoint saved: " : "checkpoint saved: ") << path;
    } catch (const std::exception& e) {
      error = e.what();
      LOG(ERROR) << (job.best ? "best checkpoint" : "checkpoint") << " NOT saved (older checkpoints untouched): " << error;
    }
    std::lock_guard<std::mutex> l(mu_);
    if (!job.best) error_ = error;
    busy_ = false;
    cv_.notify_all();
  }
}

}  // namespace evl
