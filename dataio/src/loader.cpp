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
      first_step_(first_step),
      end_step_(end_step),
      pin_memory_(pin_memory),
      next_out_step_(first_step),
      start_(std::chrono::steady_clock::now()) {
  if (first_step >= end_step) return;
  StepBatch first;
  first.indices = samples_for_step_(first_step);
  batch_ = static_cast<int64_t>(first.indices.size());
  if (batch_ == 0) throw std::invalid_argument("loader: step " + std::to_string(first_step) + " has no samples");
  steps_.emplace(first_step, std::move(first));
  prefetcher_ = std::make_unique<OrderedPrefetcher<int64_t, VideoReader>>(
      (end_step - first_step) * batch_, num_workers, static_cast<int64_t>(std::max(1, prefetch_batches)) * batch_,
      [this](int64_t k, VideoReader& reader) { return DecodeSample(k, reader); });
}

Loader::~Loader() {
  stopping_ = true;  // a sample being replaced gives up between attempts
  prefetcher_.reset();
}

at::Tensor Loader::LoadWithReplacement(int64_t step, int64_t index, VideoReader& reader, int64_t* used) {
  const auto& o = dataset_->options();
  int64_t candidate = index;
  for (int attempt = 0;; ++attempt) {
    if (stopping_) return at::Tensor();
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++attempts_;
    }
    try {
      *used = candidate;
      return dataset_->Load(candidate, static_cast<uint64_t>(step), reader);
    } catch (const DataError& e) {
      std::lock_guard<std::mutex> lock(mu_);
      ++failures_;
      const std::string& path = dataset_->entry(candidate).path;
      if (!reported_[path]) {
        reported_[path] = true;
        LOG(WARNING) << "skipping video: " << e.what();
      }
      if (attempts_ >= 20 && failures_ * 2 > attempts_)
        throw DataError("most videos fail to load (" + std::to_string(failures_) + " of " + std::to_string(attempts_) +
                        " attempts; last: " + e.what() + "); check data.train_list/data_root");
    }
    // Replacement drawn from its own generator: the same failure gives the same replacement.
    std::mt19937_64 rng = SampleRng(o.seed ^ 0x5eedbadULL, static_cast<uint64_t>(step),
                                    static_cast<uint64_t>(index) * 64 + attempt);
    candidate = std::uniform_int_distribution<int64_t>(0, dataset_->size() - 1)(rng);
  }
}

int64_t Loader::DecodeSample(int64_t k, VideoReader& reader) {
  const int64_t step = first_step_ + k / batch_, slot = k % batch_;
  int64_t index, used;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = steps_.find(step);
    if (it == steps_.end()) {
      StepBatch b;
      b.indices = samples_for_step_(step);
      if (static_cast<int64_t>(b.indices.size()) != batch_)
        throw std::logic_error("loader: step " + std::to_string(step) + " has " + std::to_string(b.indices.size()) +
                               " samples, step " + std::to_string(first_step_) + " had " + std::to_string(batch_));
      it = steps_.emplace(step, std::move(b)).first;
    }
    index = used = it->second.indices[slot];
  }
  // Anything but a DataError (handled by replacement) ends the run, naming the video: the caller
  // would otherwise learn only that something failed somewhere.
  try {
    at::Tensor clip = LoadWithReplacement(step, index, reader, &used);
    if (!clip.defined()) return used;  // stopping
    at::Tensor row;
    {
      std::lock_guard<std::mutex> lock(mu_);
      StepBatch& b = steps_.at(step);  // stays put until Next() takes it, after its last row is in
      if (!b.clips.defined()) {
        std::vector<int64_t> sizes = clip.sizes().vec();
        sizes.insert(sizes.begin(), batch_);
        b.clips = at::empty(sizes, clip.options().pinned_memory(pin_memory_));
      }
      row = b.clips.select(0, slot);
    }
    row.copy_(clip);  // outside the lock: each thread writes its own row
    return used;
  } catch (const DataError&) {
    throw;  // most videos fail: already says so
  } catch (const std::exception& e) {
    std::string video = "index " + std::to_string(used);
    if (used >= 0 && used < dataset_->size()) video = "'" + dataset_->entry(used).path + "' (" + video + ")";
    throw std::runtime_error("loading video " + video + " for step " + std::to_string(step) + " failed: " + e.what());
  }
}

bool Loader::Next(Batch* batch) {
  if (next_out_step_ >= end_step_) return false;
  std::vector<int64_t> used(static_cast<size_t>(batch_));
  for (auto& u : used)
    if (!prefetcher_->Next(&u)) return false;
  StepBatch b;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = steps_.find(next_out_step_);
    b = std::move(it->second);
    steps_.erase(it);
    clips_ += batch_;
  }
  batch->step = next_out_step_++;
  batch->clips = b.clips;
  std::vector<int64_t> labels;
  for (int64_t i : used) labels.push_back(dataset_->entry(i).label);
  batch->labels = torch::tensor(labels, torch::kLong);
  batch->indices = std::move(used);
  return true;
}

LoaderCounters Loader::counters() const {
  std::lock_guard<std::mutex> lock(mu_);
  LoaderCounters c;
  c.clips = clips_;
  c.skipped = failures_;
  c.skipped_files = static_cast<int64_t>(reported_.size());
  c.wait_s = prefetcher_ ? prefetcher_->wait_s() : 0;
  c.room_wait_s = prefetcher_ ? prefetcher_->room_wait_s() : 0;
  c.workers = prefetcher_ ? prefetcher_->threads() : 0;
  c.elapsed_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  return c;
}

}  // namespace evl
