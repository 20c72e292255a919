// The NCCL communicator's life, from a non-blocking init to finalize or abort, with every wait
// bounded. It sees NCCL (and the one CUDA call its waits need) only through NcclApi, a table of
// functions over opaque handles that also carries the clock, so that it compiles without NCCL or
// CUDA and its tests drive it with a fake library and a fake clock (tests/nccl_lifecycle_test.cpp);
// nccl_communicator.cpp fills the table with the real calls (RealNcclApi).
//
// The rules it keeps, from NCCL's documentation of non-blocking communicators: a call that returns
// ncclInProgress is finished only when ncclCommGetAsyncError stops saying so, and no other call may
// be made on the communicator before; after an error nothing can be assumed about the communicator
// but that ncclCommAbort frees it; an aborted communicator is never touched again (not destroyed,
// not polled); ncclCommDestroy waits for peers, so it follows a ncclCommFinalize that finished.
//
// Thread-safety: Abort and the polls of a running collective may come from any thread (each
// CommWork waits on its own); Init, the enqueue wait and Shutdown are the owner's, one at a time.
#pragma once

#include <atomic>
#include <functional>
#include <mutex>
#include <string>

namespace evl {

// ncclResult_t's values that the state machine tells apart (nccl_communicator.cpp static_asserts
// that they are NCCL's). Every other non-zero result is an error.
constexpr int kNcclSuccess = 0;
constexpr int kNcclInProgress = 7;

// What cudaEventQuery said: done, not yet, or an error (with CUDA's string).
enum class EventStatus { kDone, kNotReady, kError };

// The library and the clock. Handles are ncclComm_t and cudaEvent_t; results are ncclResult_t.
struct NcclApi {
  // ncclCommInitRankConfig with config.blocking = 0: returns at once, usually ncclInProgress, and
  // stores the half-made communicator in *comm (which ncclCommAbort can free) even then.
  // `unique_id` points to the ncclUniqueId that rank 0 made.
  std::function<int(void** comm, int nranks, const void* unique_id, int rank)> commInitRankConfig;
  std::function<int(void* comm, int* async_error)> commGetAsyncError;
  std::function<int(void* comm)> commFinalize;
  std::function<int(void* comm)> commDestroy;
  std::function<int(void* comm)> commAbort;
  std::function<std::string(int result)> getErrorString;
  // ncclGetLastError: NCCL's own sentence about the last failure; may be left empty.
  std::function<std::string(void* comm)> getLastError;
  // cudaEventQuery; on kError, *error is CUDA's string.
  std::function<EventStatus(void* event, std::string* error)> eventQuery;
  // A monotonic clock in seconds and a sleep; tests advance a fake clock in `sleep`.
  std::function<double()> now;
  std::function<void(double seconds)> sleep;
};

// Called once a wait's deadline has passed, with the seconds waited. The communicator's ends the
// job (AbortJob with kExitStalled, naming the ranks that did not arrive) and does not return; one
// that returns (tests) leaves the communicator aborted and the wait throwing.
using StallHandler = std::function<void(double waited_s)>;

class NcclLifecycle {
 public:
  NcclLifecycle(NcclApi api, int rank, int world);
  NcclLifecycle(const NcclLifecycle&) = delete;
  NcclLifecycle& operator=(const NcclLifecycle&) = delete;
  // Does nothing: the owner calls Shutdown, which needs to know whether it is unwinding.
  ~NcclLifecycle() = default;

  // Makes the communicator, waiting at most `timeout_s` for every rank to join. On the deadline or
  // an error the half-made communicator is aborted and std::runtime_error thrown: the deadline's
  // names the rank, the world, the seconds waited and what to check (the NIC NCCL_SOCKET_IFNAME
  // picks, a firewall between the nodes, NCCL_DEBUG=INFO); an error's carries NCCL's string.
  // REQUIRES: called once, before anything else; the CUDA device is set.
  void Init(const void* unique_id, double timeout_s);

  // The ncclComm_t; null before Init. Use only while usable() (an aborted one is freed).
  void* comm() const { return comm_; }
  bool usable() const { return state_.load() == State::kReady; }
  bool aborted() const { return state_.load() == State::kAborted; }

  // Throws std::runtime_error naming `collective` unless the communicator can take a collective.
  void CheckUsable(const std::string& collective) const;

  // Right after the call that enqueues `collective`, with its result: returns once it is enqueued.
  // kNcclInProgress (a non-blocking communicator may say so) is polled to the end, at most
  // `timeout_s`; past it `on_stall` runs. An error, then or at once, aborts and throws NCCL's
  // string: this rank cannot continue the sequence of collectives the other ranks issued.
  void WaitEnqueued(int result, const std::string& collective, double timeout_s, const StallHandler& on_stall);

  // Waits for `event` (recorded after the collective on its stream), polling NCCL's asynchronous
  // errors meanwhile; an error aborts (once) and throws naming `collective`. Past `timeout_s`,
  // `on_stall` runs. Throws at once, touching nothing, if the communicator is aborted or closed.
  void WaitEvent(void* event, const std::string& collective, double timeout_s, const StallHandler& on_stall);

  // ncclCommAbort, once whichever thread asks first; a no-op before Init and after Shutdown or an
  // abort. Returns whether this call aborted.
  bool Abort();

  // Ends the communicator without throwing: unwinding (an exception is leaving the owner, so peers
  // may be gone) aborts at once; otherwise ncclCommFinalize, polled at most `timeout_s`, then
  // ncclCommDestroy. A finalize that fails or does not finish in time is aborted instead, and the
  // communicator is never destroyed after an abort. A no-op if already aborted or shut down.
  // REQUIRES: no collective is being waited on.
  void Shutdown(double timeout_s, bool unwinding);

 private:
  enum class State { kNone, kInitializing, kReady, kClosing, kClosed, kAborted };
  // ncclCommGetAsyncError (its own failure counts as the result), under the lock that Abort takes
  // so that it never runs on a freed communicator. False, touching nothing, once aborted or closed.
  bool PollAsyncError(int* result);
  // Polls while NCCL says ncclInProgress, until `deadline`; returns the last result
  // (kNcclInProgress if the deadline passed). Throws if another thread aborted meanwhile.
  int PollWhileInProgress(double deadline);
  void Destroy();
  std::string Describe(int result) const;
  std::string InitTimeoutMessage(double waited_s) const;
  // Aborts and throws `what` + NCCL's string for `result`.
  [[noreturn]] void AbortAndThrow(const std::string& what, int result);
  [[noreturn]] void Stalled(const std::string& collective, double waited_s, const StallHandler& on_stall);

  NcclApi api_;
  int rank_, world_;
  void* comm_ = nullptr;
  std::mutex mu_;  // every call on comm_ that may race an abort: the polls, abort, destroy
  std::atomic<State> state_{State::kNone};
};

}  // namespace evl
