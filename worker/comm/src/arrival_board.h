// Which rank reached which collective: each rank tells rank 0 the sequence number of every
// collective it reaches (8 bytes, MPI_Isend on a communicator of its own, never waiting for rank
// 0); rank 0 drains them as it reaches its own collectives. When a collective times out, rank 0
// can name the ranks that never arrived and where each was last seen. Shared by the MPI and NCCL
// communicators (the NCCL one still bootstraps over MPI).
#pragma once

#include <mpi.h>

#include <array>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

namespace evl {

class ArrivalBoard {
 public:
  ArrivalBoard();
  ~ArrivalBoard();
  ArrivalBoard(const ArrivalBoard&) = delete;
  ArrivalBoard& operator=(const ArrivalBoard&) = delete;

  // This rank reached collective `seq` (numbered alike on every rank) called `name`.
  void Arrive(int64_t seq, const std::string& name);
  // For a log line about a timed-out collective `seq`: on rank 0 the ranks that did not arrive.
  std::string StallReport(int64_t seq);

 private:
  void DrainLocked();
  static constexpr int64_t kNames = 64;
  int rank_ = 0, world_ = 1;
  MPI_Comm comm_ = MPI_COMM_NULL;
  std::mutex mu_;
  std::vector<int64_t> last_seen_;
  std::array<std::string, kNames> names_;
  std::array<int64_t, kNames> send_slots_{};
};

}  // namespace evl
