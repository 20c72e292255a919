#include "evl/sampler.h"

#include <algorithm>
#include <numeric>
#include <random>
#include <stdexcept>

namespace evl {

GlobalSampler::GlobalSampler(int64_t dataset_size, int64_t global_batch, uint64_t seed)
    : size_(dataset_size), global_batch_(global_batch), seed_(seed) {
  if (size_ <= 0) throw std::invalid_argument("sampler: empty dataset");
  if (global_batch_ <= 0) throw std::invalid_argument("sampler: train.batch_size must be > 0");
}

std::shared_ptr<const std::vector<int64_t>> GlobalSampler::Permutation(int64_t epoch) const {
  std::lock_guard<std::mutex> l(mu_);
  auto it = cache_.find(epoch);
  if (it != cache_.end()) return it->second;
  // A caller still reading an evicted permutation holds its own reference to it.
  if (cache_.size() > 4) cache_.erase(cache_.begin());
  std::vector<int64_t> p(size_);
  std::iota(p.begin(), p.end(), 0);
  std::seed_seq seq{static_cast<uint32_t>(seed_), static_cast<uint32_t>(seed_ >> 32), static_cast<uint32_t>(epoch),
                    static_cast<uint32_t>(epoch >> 32), 0x5a3du};
  std::mt19937_64 rng(seq);
  // Fisher-Yates written out: std::shuffle's draws are implementation-defined.
  for (int64_t i = size_ - 1; i > 0; --i) std::swap(p[i], p[rng() % static_cast<uint64_t>(i + 1)]);
  return cache_.emplace(epoch, std::make_shared<const std::vector<int64_t>>(std::move(p))).first->second;
}

std::vector<int64_t> GlobalSampler::GlobalIndices(int64_t step) const {
  std::vector<int64_t> out;
  out.reserve(global_batch_);
  std::shared_ptr<const std::vector<int64_t>> perm;
  for (int64_t k = step * global_batch_; k < (step + 1) * global_batch_; ++k) {
    if (!perm || k % size_ == 0) perm = Permutation(k / size_);
    out.push_back((*perm)[k % size_]);
  }
  return out;
}

std::vector<int64_t> GlobalSampler::RankIndices(int64_t step, int rank, int world) const {
  if (global_batch_ % world)
    throw std::invalid_argument("train.batch_size " + std::to_string(global_batch_) + " does not divide by " +
                                std::to_string(world) + " ranks");
  auto all = GlobalIndices(step);
  const int64_t per = global_batch_ / world;
  return std::vector<int64_t>(all.begin() + rank * per, all.begin() + (rank + 1) * per);
}

}  // namespace evl
