#include "arrival_board.h"

#include <algorithm>

namespace evl {
namespace {
constexpr int kArrivalTag = 7;
}  // namespace

ArrivalBoard::ArrivalBoard() {
  MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &world_);
  MPI_Comm_dup(MPI_COMM_WORLD, &comm_);
  last_seen_.assign(world_, -1);
}

ArrivalBoard::~ArrivalBoard() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (finalized) return;
  {
    std::lock_guard<std::mutex> l(mu_);
    DrainLocked();
  }
  MPI_Comm_free(&comm_);
}

void ArrivalBoard::Arrive(int64_t seq, const std::string& name) {
  if (world_ == 1) return;
  if (rank_ != 0) {
    // Never waits for rank 0, even a dead one: a nonblocking send whose request is let go (MPI
    // completes it on its own). A blocking MPI_Send returns early only below the eager limit, which
    // is the transport's choice. The buffer must outlive the send: one slot per recent collective.
    int64_t& slot = send_slots_[static_cast<size_t>(seq % kNames)];
    slot = seq;
    MPI_Request request;
    MPI_Isend(&slot, 1, MPI_INT64_T, 0, kArrivalTag, comm_, &request);
    MPI_Request_free(&request);
    return;
  }
  std::lock_guard<std::mutex> l(mu_);
  last_seen_[0] = seq;
  names_[seq % kNames] = name;
  DrainLocked();
}

void ArrivalBoard::DrainLocked() {
  if (rank_ != 0) return;
  while (true) {
    int flag = 0;
    MPI_Status st;
    MPI_Iprobe(MPI_ANY_SOURCE, kArrivalTag, comm_, &flag, &st);
    if (!flag) return;
    int64_t seq = -1;
    MPI_Recv(&seq, 1, MPI_INT64_T, st.MPI_SOURCE, kArrivalTag, comm_, MPI_STATUS_IGNORE);
    last_seen_[st.MPI_SOURCE] = std::max(last_seen_[st.MPI_SOURCE], seq);
  }
}

std::string ArrivalBoard::StallReport(int64_t seq) {
  if (rank_ != 0) return "rank 0 names the ranks that did not arrive";
  std::lock_guard<std::mutex> l(mu_);
  DrainLocked();
  std::string missing;
  int count = 0;
  for (int r = 0; r < world_; ++r) {
    if (last_seen_[r] >= seq) continue;
    if (++count > 32) continue;
    const int64_t at = last_seen_[r];
    missing += (missing.empty() ? "" : ", ") + std::to_string(r) + " (last at " +
               (at < 0 ? std::string("none")
                       : "#" + std::to_string(at) + (seq - at < kNames ? " '" + names_[at % kNames] + "'" : "")) +
               ")";
  }
  if (count == 0) return "every rank arrived (a collective mismatch or a network fault)";
  return "ranks not arrived: " + missing + (count > 32 ? " and " + std::to_string(count - 32) + " more" : "");
}

}  // namespace evl
