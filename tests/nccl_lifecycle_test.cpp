// The NCCL communicator's state machine (worker/comm/src/nccl_lifecycle.h) against a fake NCCL and
// a fake clock that advances only when the code under test sleeps: every deadline is exercised in
// microseconds of real time, on machines with no GPU, and never depends on the machine's speed.
#include "../worker/comm/src/nccl_lifecycle.h"

#include <gtest/gtest.h>

#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

namespace evl {
namespace {

// ncclResult_t values the tests use (nccl.h).
constexpr int kSystemError = 2;
constexpr int kInvalidArgument = 4;
constexpr int kRemoteError = 6;

// One rank's NCCL, scripted: what init and finalize return, what ncclCommGetAsyncError reports as
// the fake clock goes on, and whether the collective's event has fired. Counts every call that
// matters to the lifecycle, and every call made on a communicator that was already aborted.
struct FakeNccl {
  int comm_object = 0;  // what the ncclComm_t points to
  double clock = 0;
  int init_result = kNcclInProgress;
  bool init_makes_comm = true;
  int finalize_result = kNcclInProgress;
  std::function<int()> async_error = [] { return kNcclInProgress; };
  EventStatus event = EventStatus::kNotReady;
  std::function<void()> on_event_query;  // stands for another thread acting between two polls

  int aborts = 0, destroys = 0, finalizes = 0, polls = 0;
  int calls_after_abort = 0;

  // ncclCommGetAsyncError says in progress until the clock reaches `at`, then `result`.
  std::function<int()> After(double at, int result) {
    return [this, at, result] { return clock >= at ? result : kNcclInProgress; };
  }

  NcclApi Api() {
    NcclApi api;
    api.commInitRankConfig = [this](void** comm, int, const void*, int) {
      if (init_makes_comm) *comm = &comm_object;
      return init_result;
    };
    api.commGetAsyncError = [this](void* comm, int* async) {
      Touch(comm);
      ++polls;
      *async = async_error();
      return kNcclSuccess;
    };
    api.commFinalize = [this](void* comm) {
      Touch(comm);
      ++finalizes;
      return finalize_result;
    };
    api.commDestroy = [this](void* comm) {
      Touch(comm);
      ++destroys;
      return kNcclSuccess;
    };
    api.commAbort = [this](void* comm) {
      Touch(comm);
      ++aborts;
      return kNcclSuccess;
    };
    api.getErrorString = [](int result) {
      switch (result) {
        case kSystemError: return std::string("unhandled system error");
        case kInvalidArgument: return std::string("invalid argument");
        case kRemoteError: return std::string("remote process exited or there was a network error");
        default: return "result " + std::to_string(result);
      }
    };
    api.getLastError = [](void*) { return std::string("socket connect to 10.0.0.2 failed"); };
    api.eventQuery = [this](void*, std::string* error) {
      if (on_event_query) on_event_query();
      if (event == EventStatus::kError) *error = "an illegal memory access was encountered";
      return event;
    };
    api.now = [this] { return clock; };
    api.sleep = [this](double s) { clock += s; };
    return api;
  }

 private:
  void Touch(void* comm) {
    EXPECT_EQ(comm, &comm_object);
    if (aborts > 0) ++calls_after_abort;
  }
};

constexpr int kRank = 3, kWorld = 8;
const int kUniqueId = 0;

std::string MessageOf(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  ADD_FAILURE() << "no std::runtime_error thrown";
  return "";
}

// A communicator whose init finished at once.
void MakeReady(FakeNccl& fake, NcclLifecycle& life) {
  fake.init_result = kNcclSuccess;
  life.Init(&kUniqueId, 60);
  ASSERT_TRUE(life.usable());
  fake.async_error = [] { return kNcclSuccess; };
}

// Keeps the time it was called at, and returns as a test's stall handler may (the real one ends the job).
struct StallSpy {
  std::vector<double> waited;
  StallHandler handler() {
    return [this](double s) { waited.push_back(s); };
  }
};

TEST(NcclLifecycle, InitThatNeverCompletesFailsAtItsDeadlineNamingTheRankAndTheNic) {
  FakeNccl fake;
  NcclLifecycle life(fake.Api(), kRank, kWorld);
  const std::string msg = MessageOf([&] { life.Init(&kUniqueId, 30); });
  EXPECT_NE(msg.find("rank 3 of 8"), std::string::npos) << msg;
  EXPECT_NE(msg.find("in 30 s"), std::string::npos) << msg;
  EXPECT_NE(msg.find("NCCL_SOCKET_IFNAME"), std::string::npos) << msg;
  EXPECT_NE(msg.find("firewall"), std::string::npos) << msg;
  EXPECT_NE(msg.find("NCCL_DEBUG=INFO"), std::string::npos) << msg;
  EXPECT_GE(fake.clock, 30);
  EXPECT_LT(fake.clock, 30.01);  // it gave up at the deadline, not some time after
  EXPECT_EQ(fake.aborts, 1);
  EXPECT_EQ(fake.destroys, 0);
  EXPECT_EQ(fake.calls_after_abort, 0);
  EXPECT_TRUE(life.aborted());
}

TEST(NcclLifecycle, InitThatCompletesInTimeIsUsable) {
  FakeNccl fake;
  fake.async_error = fake.After(2.5, kNcclSuccess);
  NcclLifecycle life(fake.Api(), kRank, kWorld);
  life.Init(&kUniqueId, 30);
  EXPECT_TRUE(life.usable());
  EXPECT_EQ(life.comm(), &fake.comm_object);
  EXPECT_GE(fake.clock, 2.5);
  EXPECT_EQ(fake.aborts, 0);
}

TEST(NcclLifecycle, InitErrorAbortsAndReportsNcclsString) {
  FakeNccl fake;
  fake.async_error = fake.After(1, kRemoteError);
  NcclLifecycle life(fake.Api(), kRank, kWorld);
  const std::string msg = MessageOf([&] { life.Init(&kUniqueId, 30); });
  EXPECT_NE(msg.find("rank 3 of 8"), std::string::npos) << msg;
  EXPECT_NE(msg.find("remote process exited or there was a network error"), std::string::npos) << msg;
  EXPECT_NE(msg.find("socket connect to 10.0.0.2 failed"), std::string::npos) << msg;  // ncclGetLastError
  EXPECT_LT(fake.clock, 1.01);
  EXPECT_EQ(fake.aborts, 1);
  EXPECT_EQ(fake.destroys, 0);
}

TEST(NcclLifecycle, InitCallThatFailsWithoutACommunicatorAbortsNothing) {
  FakeNccl fake;
  fake.init_result = kInvalidArgument;
  fake.init_makes_comm = false;
  NcclLifecycle life(fake.Api(), kRank, kWorld);
  const std::string msg = MessageOf([&] { life.Init(&kUniqueId, 30); });
  EXPECT_NE(msg.find("invalid argument"), std::string::npos) << msg;
  EXPECT_EQ(fake.aborts, 0);
  EXPECT_TRUE(life.aborted());
}

TEST(NcclLifecycle, CollectiveWaitReturnsWhenItsEventFires) {
  FakeNccl fake;
  NcclLifecycle life(fake.Api(), kRank, kWorld);
  MakeReady(fake, life);
  fake.event = EventStatus::kDone;
  StallSpy stall;
  life.WaitEvent(nullptr, "grad_bucket_0", 10, stall.handler());
  EXPECT_TRUE(stall.waited.empty());
  EXPECT_TRUE(life.usable());
}

TEST(NcclLifecycle, AsyncErrorDuringACollectiveAbortsOnceAndNamesTheCollective) {
  FakeNccl fake;
  NcclLifecycle life(fake.Api(), kRank, kWorld);
  MakeReady(fake, life);
  fake.async_error = fake.After(fake.clock + 0.01, kRemoteError);
  StallSpy stall;
  const std::string first = MessageOf([&] { life.WaitEvent(nullptr, "grad_bucket_0", 10, stall.handler()); });
  EXPECT_NE(first.find("'grad_bucket_0'"), std::string::npos) << first;
  EXPECT_NE(first.find("remote process exited"), std::string::npos) << first;
  EXPECT_EQ(fake.aborts, 1);
  EXPECT_TRUE(stall.waited.empty());

  // A second waiter (another bucket's work) fails too, without touching the freed communicator.
  const std::string second = MessageOf([&] { life.WaitEvent(nullptr, "grad_bucket_1", 10, stall.handler()); });
  EXPECT_NE(second.find("'grad_bucket_1'"), std::string::npos) << second;
  EXPECT_NE(second.find("aborted"), std::string::npos) << second;
  EXPECT_EQ(fake.aborts, 1);
  EXPECT_FALSE(life.Abort());
  EXPECT_EQ(fake.aborts, 1);
  EXPECT_EQ(fake.calls_after_abort, 0);
  EXPECT_THROW(life.CheckUsable("loss"), std::runtime_error);

  life.Shutdown(10, false);  // an aborted communicator is never finalized or destroyed
  EXPECT_EQ(fake.finalizes, 0);
  EXPECT_EQ(fake.destroys, 0);
}

TEST(NcclLifecycle, AbortByAnotherThreadEndsAWaitWithoutTouchingTheFreedCommunicator) {
  FakeNccl fake;
  NcclLifecycle life(fake.Api(), kRank, kWorld);
  MakeReady(fake, life);
  int queries = 0;
  fake.on_event_query = [&] {
    if (++queries == 3) {
      EXPECT_TRUE(life.Abort());  // e.g. another bucket's work saw the error
    }
  };
  const std::string msg = MessageOf([&] { life.WaitEvent(nullptr, "grad_bucket_0", 10, {}); });
  EXPECT_NE(msg.find("'grad_bucket_0'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("aborted"), std::string::npos) << msg;
  EXPECT_EQ(fake.aborts, 1);
  EXPECT_EQ(fake.calls_after_abort, 0);
}

TEST(NcclLifecycle, CollectiveThatNeverCompletesCallsTheStallHandlerAtItsDeadline) {
  FakeNccl fake;
  NcclLifecycle life(fake.Api(), kRank, kWorld);
  MakeReady(fake, life);
  const double start = fake.clock;
  StallSpy stall;
  const std::string msg = MessageOf([&] { life.WaitEvent(nullptr, "step_metrics", 5, stall.handler()); });
  ASSERT_EQ(stall.waited.size(), 1u);
  EXPECT_GE(stall.waited[0], 5);
  EXPECT_LT(stall.waited[0], 5.001);
  EXPECT_LT(fake.clock - start, 5.001);
  EXPECT_NE(msg.find("'step_metrics'"), std::string::npos) << msg;
  EXPECT_EQ(fake.aborts, 1);
}

TEST(NcclLifecycle, CudaErrorOnTheEventIsReportedWithTheCollective) {
  FakeNccl fake;
  NcclLifecycle life(fake.Api(), kRank, kWorld);
  MakeReady(fake, life);
  fake.event = EventStatus::kError;
  const std::string msg = MessageOf([&] { life.WaitEvent(nullptr, "broadcast_params", 5, {}); });
  EXPECT_NE(msg.find("'broadcast_params'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("illegal memory access"), std::string::npos) << msg;
}

TEST(NcclLifecycle, CollectiveEnqueueInProgressIsWaitedFor) {
  FakeNccl fake;
  NcclLifecycle life(fake.Api(), kRank, kWorld);
  MakeReady(fake, life);
  fake.async_error = fake.After(fake.clock + 0.5, kNcclSuccess);
  StallSpy stall;
  life.WaitEnqueued(kNcclInProgress, "grad_bucket_0", 10, stall.handler());
  EXPECT_GE(fake.clock, 0.5);
  EXPECT_TRUE(stall.waited.empty());
  EXPECT_TRUE(life.usable());

  const int polls = fake.polls;
  life.WaitEnqueued(kNcclSuccess, "grad_bucket_1", 10, stall.handler());  // enqueued at once: no poll
  EXPECT_EQ(fake.polls, polls);
}

TEST(NcclLifecycle, CollectiveEnqueueThatNeverFinishesStalls) {
  FakeNccl fake;
  NcclLifecycle life(fake.Api(), kRank, kWorld);
  MakeReady(fake, life);
  fake.async_error = [] { return kNcclInProgress; };
  StallSpy stall;
  const std::string msg =
      MessageOf([&] { life.WaitEnqueued(kNcclInProgress, "grad_bucket_0", 10, stall.handler()); });
  ASSERT_EQ(stall.waited.size(), 1u);
  EXPECT_GE(stall.waited[0], 10);
  EXPECT_NE(msg.find("'grad_bucket_0'"), std::string::npos) << msg;
  EXPECT_EQ(fake.aborts, 1);
}

TEST(NcclLifecycle, CollectiveEnqueueErrorAbortsAndNamesTheCollective) {
  FakeNccl fake;
  NcclLifecycle life(fake.Api(), kRank, kWorld);
  MakeReady(fake, life);
  const std::string msg = MessageOf([&] { life.WaitEnqueued(kSystemError, "grad_bucket_2", 10, {}); });
  EXPECT_NE(msg.find("'grad_bucket_2'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("unhandled system error"), std::string::npos) << msg;
  EXPECT_EQ(fake.aborts, 1);
}

TEST(NcclLifecycle, FinalizeThatCompletesIsFollowedByDestroy) {
  FakeNccl fake;
  NcclLifecycle life(fake.Api(), kRank, kWorld);
  MakeReady(fake, life);
  fake.async_error = fake.After(fake.clock + 1, kNcclSuccess);
  life.Shutdown(10, false);
  EXPECT_EQ(fake.finalizes, 1);
  EXPECT_EQ(fake.destroys, 1);
  EXPECT_EQ(fake.aborts, 0);
  EXPECT_FALSE(life.usable());
  EXPECT_FALSE(life.Abort());  // after a shutdown there is nothing left to abort
  EXPECT_EQ(fake.aborts, 0);
  EXPECT_THROW(life.CheckUsable("late"), std::runtime_error);
}

TEST(NcclLifecycle, FinalizeThatNeverCompletesIsAbortedNotDestroyed) {
  FakeNccl fake;
  NcclLifecycle life(fake.Api(), kRank, kWorld);
  MakeReady(fake, life);
  fake.async_error = [] { return kNcclInProgress; };
  const double start = fake.clock;
  life.Shutdown(10, false);
  EXPECT_GE(fake.clock - start, 10);
  EXPECT_LT(fake.clock - start, 10.01);
  EXPECT_EQ(fake.finalizes, 1);
  EXPECT_EQ(fake.aborts, 1);
  EXPECT_EQ(fake.destroys, 0);
  EXPECT_TRUE(life.aborted());
}

TEST(NcclLifecycle, FinalizeThatFailsIsAbortedNotDestroyed) {
  FakeNccl fake;
  NcclLifecycle life(fake.Api(), kRank, kWorld);
  MakeReady(fake, life);
  fake.async_error = fake.After(fake.clock + 0.2, kRemoteError);
  life.Shutdown(10, false);
  EXPECT_EQ(fake.aborts, 1);
  EXPECT_EQ(fake.destroys, 0);

  FakeNccl at_once;  // ncclCommFinalize itself returns the error
  NcclLifecycle life2(at_once.Api(), kRank, kWorld);
  MakeReady(at_once, life2);
  at_once.finalize_result = kSystemError;
  life2.Shutdown(10, false);
  EXPECT_EQ(at_once.aborts, 1);
  EXPECT_EQ(at_once.destroys, 0);
}

TEST(NcclLifecycle, ShutdownWhileUnwindingAbortsAtOnce) {
  FakeNccl fake;
  NcclLifecycle life(fake.Api(), kRank, kWorld);
  MakeReady(fake, life);
  const double start = fake.clock;
  life.Shutdown(10, true);
  EXPECT_EQ(fake.clock, start);
  EXPECT_EQ(fake.finalizes, 0);
  EXPECT_EQ(fake.aborts, 1);
  EXPECT_EQ(fake.destroys, 0);
  life.Shutdown(10, false);  // a second shutdown (the owner's destructor after an explicit one) is a no-op
  EXPECT_EQ(fake.aborts, 1);
  EXPECT_EQ(fake.finalizes, 0);
}

TEST(NcclLifecycle, ShutdownBeforeInitTouchesNothing) {
  FakeNccl fake;
  NcclLifecycle life(fake.Api(), kRank, kWorld);
  life.Shutdown(10, false);
  life.Shutdown(10, true);
  EXPECT_EQ(fake.finalizes + fake.aborts + fake.destroys + fake.polls, 0);
}

}  // namespace
}  // namespace evl
