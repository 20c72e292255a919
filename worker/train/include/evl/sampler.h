// The step-based global sampler (as the official code's): epoch permutations of the dataset are
// concatenated into one endless sequence; step s takes the next `global_batch` indices and rank r
// takes its contiguous slice. A pure function of (seed, step, rank, world): resuming at step k or
// changing the world size keeps the global sample order.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

namespace evl {

class GlobalSampler {
 public:
  GlobalSampler(int64_t dataset_size, int64_t global_batch, uint64_t seed);
  std::vector<int64_t> GlobalIndices(int64_t step) const;
  // REQUIRES: global_batch % world == 0.
  std::vector<int64_t> RankIndices(int64_t step, int rank, int world) const;
  int64_t epoch_of_step(int64_t step) const { return step * global_batch_ / size_; }

 private:
  std::shared_ptr<const std::vector<int64_t>> Permutation(int64_t epoch) const;
  int64_t size_, global_batch_;
  uint64_t seed_;
  mutable std::mutex mu_;
  mutable std::map<int64_t, std::shared_ptr<const std::vector<int64_t>>> cache_;  // the last few epochs
};

}  // namespace evl
