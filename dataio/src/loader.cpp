#include "evl/loader.h"

#include <glog/logging.h>
#include <torch/torch.h>

#include "evl/sampling.h"
#include "evl/video_reader.h"

namespace evl {

Loader::Loader(std::shared_ptr<const VideoClipDataset> dataset, SampleFn samples_for_step, int64_t first_step,
               int64_t end_step, int num_workers, int prefetch_batches, bool pin_memory)
    : dataset_(std::move(dataset)),
      samples_for_step_(std::move(samples_for_step)),
      end_step_(end_step),
      prefetch_(std::max(1, prefetch_batches)),
      pin_memory_(pin_memory),
      next_out_step_(first_step),
      next_job_step_(first_step),
      start_(std::chrono::steady_clock::now()) {
  for (int i = 0; i < std::max(1, num_workers); ++i) workers_.emplace_back([this] { Work(); });
}

Loader::~Loader() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  work_cv_.notify_all();
  ready_cv_.notify_all();
  for (auto& t : workers_) t.join();
}

at::Tensor Loader::LoadWithReplacement(int64_t step, int64_t index, VideoReader& reader, int64_t* used) {
  const auto& o = dataset_->options();
  int64_t candidate = index;
  for (int attempt = 0;; ++attempt) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stop_) return at::Tensor();
      ++attempts_;
    }
    try {
      auto clip = dataset_->Load(candidate, static_cast<uint64_t>(step), reader);
      *used = candidate;
      return clip;
    } catch (const DataError& e) {
      std::lock_guard<std::mutex> lock(mu_);
      ++failures_;
      const std::string& path = dataset_->entry(candidate).path;
      if (!reported_[path]) {
        reported_[path] = true;
        LOG(WARNING) << "skipping video: " << e.what();
      }
      if (attempts_ >= 20 && failures_ * 2 > attempts_) {
        fatal_ = "most videos fail to load (" + std::to_string(failures_) + " of " + std::to_string(attempts_) +
                 " attempts; last: " + e.what() + "); check data.train_list/data_root";
        stop_ = true;
        ready_cv_.notify_all();
        work_cv_.notify_all();
        return at::Tensor();
      }
    }
    // Replacement drawn from its own generator: the same failure gives the same replacement.
    std::mt19937_64 rng = SampleRng(o.seed ^ 0x5eedbadULL, static_cast<uint64_t>(step),
                                    static_cast<uint64_t>(index) * 64 + attempt);
    candidate = std::uniform_int_distribution<int64_t>(0, dataset_->size() - 1)(rng);
  }
}

void Loader::Work() {
  VideoReader reader;
  while (true) {
    int64_t step, index;
    size_t slot;
    {
      std::unique_lock<std::mutex> lock(mu_);
      work_cv_.wait(lock, [&] {
        return stop_ || (next_job_step_ < end_step_ && next_job_step_ < next_out_step_ + prefetch_);
      });
      if (stop_) return;
      auto it = pending_.find(next_job_step_);
      if (it == pending_.end()) {
        Pending p;
        p.indices = samples_for_step_(next_job_step_);
        p.used.resize(p.indices.size());
        p.remaining = static_cast<int>(p.indices.size());
        it = pending_.emplace(next_job_step_, std::move(p)).first;
      }
      step = next_job_step_;
      slot = next_job_slot_;
      index = it->second.indices[slot];
      if (++next_job_slot_ >= it->second.indices.size()) {
        next_job_slot_ = 0;
        ++next_job_step_;
      }
    }
    int64_t used = index;
    // Anything but a DataError (handled by replacement) ends the run, naming the video: an
    // exception escaping this thread would terminate the process without a word.
    try {
      at::Tensor clip = LoadWithReplacement(step, index, reader, &used);
      at::Tensor row;
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (stop_) return;
        Pending& p = pending_[step];  // stays put until Next() erases it, after the last row is in
        if (!p.clips.defined()) {
          std::vector<int64_t> sizes = clip.sizes().vec();
          sizes.insert(sizes.begin(), static_cast<int64_t>(p.indices.size()));
          p.clips = at::empty(sizes, clip.options().pinned_memory(pin_memory_));
        }
        row = p.clips.select(0, static_cast<int64_t>(slot));
      }
      row.copy_(clip);  // outside the lock: each thread writes its own row
    } catch (const std::exception& e) {
      std::string video = "index " + std::to_string(used);
      if (used >= 0 && used < dataset_->size()) video = "'" + dataset_->entry(used).path + "' (" + video + ")";
      std::lock_guard<std::mutex> lock(mu_);
      if (fatal_.empty()) {
        fatal_ = "loading video " + video + " for step " + std::to_string(step) + " failed: " + e.what();
        fatal_is_data_ = false;
      }
      stop_ = true;
      ready_cv_.notify_all();
      work_cv_.notify_all();
      return;
    }
    std::lock_guard<std::mutex> lock(mu_);
    if (stop_) return;
    Pending& p = pending_[step];
    p.used[slot] = used;
    if (--p.remaining == 0) ready_cv_.notify_all();
  }
}

bool Loader::Next(Batch* batch) {
  const auto t0 = std::chrono::steady_clock::now();
  std::unique_lock<std::mutex> lock(mu_);
  if (next_out_step_ >= end_step_) return false;
  ready_cv_.wait(lock, [&] {
    auto it = pending_.find(next_out_step_);
    return stop_ || (it != pending_.end() && it->second.remaining == 0);
  });
  if (!fatal_.empty()) {
    if (fatal_is_data_) throw DataError(fatal_);
    throw std::runtime_error(fatal_);
  }
  if (stop_) return false;
  Pending p = std::move(pending_[next_out_step_]);
  pending_.erase(next_out_step_);
  batch->step = next_out_step_++;
  work_cv_.notify_all();
  wait_s_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  lock.unlock();
  batch->clips = p.clips;
  std::vector<int64_t> labels;
  for (int64_t i : p.used) labels.push_back(dataset_->entry(i).label);
  batch->labels = torch::tensor(labels, torch::kLong);
  batch->indices = p.used;
  lock.lock();
  clips_ += static_cast<int64_t>(p.used.size());
  return true;
}

LoaderCounters Loader::counters() const {
  std::lock_guard<std::mutex> lock(mu_);
  LoaderCounters c;
  c.clips = clips_;
  c.skipped = failures_;
  c.skipped_files = static_cast<int64_t>(reported_.size());
  c.wait_s = wait_s_;
  c.elapsed_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  return c;
}

}  // namespace evl
