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

}  // namespace

std::string CheckpointPath(const std::string& run_dir, int64_t step) {
  char name[64];
  std::snprintf(name, sizeof name, "/checkpoints/ckpt-%08ld.evlckpt", static_cast<long>(step));
  return run_dir + name;
}

std::vector<std::string> ListCheckpoints(const std::string& run_dir) {
  std::vector<std::pair<int64_t, std::string>> found;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(run_dir + "/checkpoints", ec)) {
    const int64_t step = StepOf(e.path().filename().string());
    if (step >= 0 && e.is_regular_file(ec)) found.emplace_back(step, e.path().string());
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
  return moved;
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

void AsyncCheckpointer::Save(CheckpointState state) { Enqueue(std::move(state), /*best=*/false); }
void AsyncCheckpointer::SaveBest(CheckpointState state) { Enqueue(std::move(state), /*best=*/true); }

void AsyncCheckpointer::Enqueue(CheckpointState state, bool best) {
  std::unique_lock<std::mutex> l(mu_);
  cv_.wait(l, [&] { return !has_job_ && !busy_; });
  job_ = std::move(state);
  job_is_best_ = best;
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

void AsyncCheckpointer::Publish(const std::string& path, int64_t step) {
  WriteFileAtomically(run_dir_ + "/checkpoints/latest", fs::path(path).filename().string() + "\n");
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
    CheckpointState job;
    bool best = false;
    {
      std::unique_lock<std::mutex> l(mu_);
      cv_.wait(l, [&] { return stop_ || has_job_; });
      if (!has_job_) return;
      job = std::move(job_);
      best = job_is_best_;
      has_job_ = false;
      busy_ = true;
    }
    std::string error;
    const std::string path = best ? BestCheckpointPath(run_dir_) : CheckpointPath(run_dir_, job.step);
    try {
      WriteCheckpointFile(path, job);
      if (!best) Publish(path, job.step);
      LOG(INFO) << (best ? "best checkpoint saved: " : "checkpoint saved: ") << path;
    } catch (const std::exception& e) {
      error = e.what();
      LOG(ERROR) << "checkpoint NOT saved (older checkpoints untouched): " << error;
    }
    std::lock_guard<std::mutex> l(mu_);
    error_ = error;
    busy_ = false;
    cv_.notify_all();
  }
}

}  // namespace evl
