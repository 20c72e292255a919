#include "nccl_lifecycle.h"

#include <glog/logging.h>

#include <cstdint>
#include <exception>
#include <stdexcept>
#include <utility>

namespace evl {

namespace {

// Init and finalize take seconds when they work; a millisecond between polls costs nothing there.
constexpr double kLifecyclePollS = 1e-3;
// A collective of a few kilobytes takes tens of microseconds; a coarser poll would add to each.
constexpr double kCollectivePollS = 50e-6;

std::string Seconds(double s) { return std::to_string(static_cast<int64_t>(s + 0.5)); }

}  // namespace

NcclLifecycle::NcclLifecycle(NcclApi api, int rank, int world) : api_(std::move(api)), rank_(rank), world_(world) {}

void NcclLifecycle::Init(const void* unique_id, double timeout_s) {
  state_ = State::kInitializing;
  const double start = api_.now();
  int result = api_.commInitRankConfig(&comm_, world_, unique_id, rank_);
  if (result == kNcclInProgress) result = PollWhileInProgress(start + timeout_s);
  if (result == kNcclSuccess) {
    state_ = State::kReady;
    return;
  }
  if (result == kNcclInProgress) {
    const std::string message = InitTimeoutMessage(api_.now() - start);
    Abort();  // non-blocking init exists for this: a half-made communicator can be freed
    throw std::runtime_error(message);
  }
  AbortAndThrow("NCCL init failed on rank " + std::to_string(rank_) + " of " + std::to_string(world_), result);
}

void NcclLifecycle::CheckUsable(const std::string& collective) const {
  switch (state_.load()) {
    case State::kReady: return;
    case State::kAborted: throw std::runtime_error("NCCL '" + collective + "': the communicator was aborted");
    case State::kNone:
    case State::kInitializing: throw std::runtime_error("NCCL '" + collective + "': the communicator is not made yet");
    default: throw std::runtime_error("NCCL '" + collective + "': the communicator was shut down");
  }
}

void NcclLifecycle::WaitEnqueued(int result, const std::string& collective, double timeout_s,
                                 const StallHandler& on_stall) {
  const double start = api_.now();
  if (result == kNcclInProgress) result = PollWhileInProgress(start + timeout_s);
  if (result == kNcclSuccess) return;
  if (result == kNcclInProgress) Stalled(collective, api_.now() - start, on_stall);
  AbortAndThrow("NCCL '" + collective + "' failed", result);
}

void NcclLifecycle::WaitEvent(void* event, const std::string& collective, double timeout_s,
                              const StallHandler& on_stall) {
  CheckUsable(collective);
  const double start = api_.now();
  while (true) {
    std::string cuda_error;
    const EventStatus done = api_.eventQuery(event, &cuda_error);
    if (done == EventStatus::kDone) return;
    if (done == EventStatus::kError) throw std::runtime_error("NCCL '" + collective + "': " + cuda_error);
    int async = kNcclSuccess;
    if (!PollAsyncError(&async)) CheckUsable(collective);  // another waiter aborted it: throws
    if (async != kNcclSuccess && async != kNcclInProgress) AbortAndThrow("NCCL '" + collective + "' failed", async);
    const double waited = api_.now() - start;
    if (waited > timeout_s) Stalled(collective, waited, on_stall);
    api_.sleep(kCollectivePollS);
  }
}

bool NcclLifecycle::Abort() {
  std::lock_guard<std::mutex> lock(mu_);
  const State state = state_.load();
  if (state != State::kInitializing && state != State::kReady && state != State::kClosing) return false;
  state_ = State::kAborted;
  if (comm_ == nullptr) return true;  // the init call failed before it made one
  const int result = api_.commAbort(comm_);
  if (result != kNcclSuccess) LOG(WARNING) << "ncclCommAbort on rank " << rank_ << ": " << api_.getErrorString(result);
  return true;
}

void NcclLifecycle::Shutdown(double timeout_s, bool unwinding) {
  if (unwinding) {
    // ncclCommFinalize would wait for peers that the exception may mean are gone.
    if (Abort()) LOG(WARNING) << "NCCL communicator of rank " << rank_ << " aborted: an exception is unwinding";
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (state_.load() != State::kReady) return;
    state_ = State::kClosing;
  }
  try {
    const double start = api_.now();
    int result = api_.commFinalize(comm_);
    if (result == kNcclInProgress) result = PollWhileInProgress(start + timeout_s);
    if (result == kNcclSuccess) {
      Destroy();
      return;
    }
    if (result == kNcclInProgress)
      LOG(ERROR) << "rank " << rank_ << ": ncclCommFinalize did not finish in " << Seconds(api_.now() - start)
                 << " s (a peer gone or stuck?); aborting the communicator";
    else
      LOG(ERROR) << "rank " << rank_ << ": ncclCommFinalize failed: " << Describe(result)
                 << "; aborting the communicator";
  } catch (const std::exception& e) {
    LOG(ERROR) << "rank " << rank_ << ": NCCL shutdown: " << e.what() << "; aborting the communicator";
  }
  Abort();
}

void NcclLifecycle::Destroy() {
  std::lock_guard<std::mutex> lock(mu_);
  state_ = State::kClosed;
  // Finalize finished, so this frees local resources only and does not wait for peers.
  const int result = api_.commDestroy(comm_);
  if (result != kNcclSuccess) LOG(WARNING) << "ncclCommDestroy on rank " << rank_ << ": " << api_.getErrorString(result);
}

bool NcclLifecycle::PollAsyncError(int* result) {
  std::lock_guard<std::mutex> lock(mu_);
  const State state = state_.load();
  if (state != State::kInitializing && state != State::kReady && state != State::kClosing) return false;
  int async = kNcclSuccess;
  const int call = api_.commGetAsyncError(comm_, &async);
  *result = call != kNcclSuccess ? call : async;
  return true;
}

int NcclLifecycle::PollWhileInProgress(double deadline) {
  while (true) {
    int result = kNcclSuccess;
    if (!PollAsyncError(&result)) throw std::runtime_error("NCCL: the communicator was aborted meanwhile");
    if (result != kNcclInProgress || api_.now() > deadline) return result;
    api_.sleep(kLifecyclePollS);
  }
}

std::string NcclLifecycle::Describe(int result) const {
  std::string text = api_.getErrorString(result);
  if (api_.getLastError && comm_ != nullptr) {
    const std::string last = api_.getLastError(comm_);
    if (!last.empty()) text += " (" + last + ")";
  }
  return text;
}

std::string NcclLifecycle::InitTimeoutMessage(double waited_s) const {
  return "NCCL init: rank " + std::to_string(rank_) + " of " + std::to_string(world_) +
         " did not connect to its peers in " + Seconds(waited_s) +
         " s. Check that every rank reached it, that NCCL_SOCKET_IFNAME names the NIC that reaches the "
         "other nodes (not a docker/virtual one), that no firewall blocks TCP between the nodes, and "
         "rerun with NCCL_DEBUG=INFO to see where it stopped";
}

void NcclLifecycle::AbortAndThrow(const std::string& what, int result) {
  const std::string message = what + ": " + Describe(result);  // before the abort frees the communicator
  Abort();
  throw std::runtime_error(message);
}

void NcclLifecycle::Stalled(const std::string& collective, double waited_s, const StallHandler& on_stall) {
  if (on_stall) on_stall(waited_s);
  Abort();
  throw std::runtime_error("NCCL '" + collective + "' did not complete in " + Seconds(waited_s) + " s on rank " +
                           std::to_string(rank_) + " of " + std::to_string(world_));
}

}  // namespace evl
