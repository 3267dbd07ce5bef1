// WorkerLink's decisions by time, driven with a fake clock and no worker process: the link is
// constructed but never started (start() is what spawns), and the worker's side of the
// handshake and its heartbeats are fed to handle_message through WorkerLinkTestPeer, the seam
// worker_link.hpp declares. What the link sends goes into its write queue on an unconnected
// socket and is never written.
#include "supervisor/pool/worker_link.hpp"

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "tests/unit/fake_clock.hpp"

namespace drover::supervisor {

struct WorkerLinkTestPeer {
  static void receive(WorkerLink& link, std::string_view message) { link.handle_message(message); }
  static void check_liveness(WorkerLink& link) { link.check_liveness(); }
};

namespace {

namespace wm = proto::worker::method;
using namespace std::chrono_literals;

class RecordingObserver final : public LinkObserver {
 public:
  void on_ready(WorkerLink&) override { ++ready; }
  void on_capacity(WorkerLink&) override {}
  void on_lost(WorkerLink&, const LinkLoss& loss,
               std::vector<std::shared_ptr<Call>> orphans) override {
    losses.push_back(loss);
    orphaned.insert(orphaned.end(), orphans.begin(), orphans.end());
  }
  void on_reaped(WorkerLink&, const ExitStatus&) override {}

  int ready = 0;
  std::vector<LinkLoss> losses;
  std::vector<std::shared_ptr<Call>> orphaned;
};

class WorkerLinkClock : public ::testing::Test {
 protected:
  WorkerLinkClock() {
    options_.heartbeat_timeout = 5000ms;
    options_.stall_timeout = 12'000ms;
    options_.max_notifications_per_s = 1000;
    options_.shm = false;
  }

  // A link that has been through hello and the init reply, at the fake clock's now.
  std::shared_ptr<WorkerLink> ready_link() {
    auto link = std::make_shared<WorkerLink>(io_, options_, observer_, clock_);
    std::string hello;
    proto::worker::encode_notification(
        hello, wm::kHello,
        proto::json{{"protocol", proto::worker::kProtocolVersion},
                    {"capabilities", proto::json::object()}});
    WorkerLinkTestPeer::receive(*link, hello);
    std::string init_reply;
    proto::worker::encode_result(init_reply, /*init is the link's first request*/ 1,
                                 proto::json::object());
    WorkerLinkTestPeer::receive(*link, init_reply);
    EXPECT_EQ(link->state(), WorkerLink::State::ready);
    EXPECT_EQ(observer_.ready, 1);
    return link;
  }

  static void heartbeat(WorkerLink& link, std::int64_t progress = -1) {
    proto::worker::Heartbeat beat;
    beat.progress = progress;
    std::string text;
    proto::worker::encode_heartbeat(text, beat);
    WorkerLinkTestPeer::receive(link, text);
  }

  static std::shared_ptr<Call> generate_call() {
    proto::worker::GenerateRequest request;
    request.prompt = "hello";
    return std::make_shared<Call>("r-1", proto::RpcId("1"), false, std::move(request), CallSink{});
  }

  FakeClock clock_;
  asio::io_context io_;
  WorkerLinkOptions options_;
  RecordingObserver observer_;
};

TEST_F(WorkerLinkClock, ReadyLinkWithoutHeartbeatFailsAfterHeartbeatTimeout) {
  auto link = ready_link();
  clock_.advance(options_.heartbeat_timeout);
  WorkerLinkTestPeer::check_liveness(*link);
  EXPECT_NE(link->state(), WorkerLink::State::dead) << "exactly heartbeat_timeout is still in time";

  clock_.advance(1ms);
  WorkerLinkTestPeer::check_liveness(*link);
  EXPECT_EQ(link->state(), WorkerLink::State::dead);
  ASSERT_EQ(observer_.losses.size(), 1u);
  EXPECT_NE(observer_.losses[0].reason.find("no heartbeat for 5001 ms"), std::string::npos)
      << observer_.losses[0].reason;
  EXPECT_NE(observer_.losses[0].reason.find("heartbeat_timeout_ms=5000"), std::string::npos);
  EXPECT_TRUE(observer_.losses[0].worker_at_fault);
  EXPECT_TRUE(observer_.losses[0].was_ready);
}

TEST_F(WorkerLinkClock, HeartbeatWithinTimeoutKeepsLinkAlive) {
  auto link = ready_link();
  // Beats every 4 s for a minute: never 5 s without one, though far longer than 5 s since ready.
  for (int i = 0; i < 15; ++i) {
    clock_.advance(4s);
    heartbeat(*link);
    WorkerLinkTestPeer::check_liveness(*link);
  }
  clock_.advance(4999ms);
  WorkerLinkTestPeer::check_liveness(*link);
  EXPECT_EQ(link->state(), WorkerLink::State::ready);
  EXPECT_TRUE(observer_.losses.empty());
  EXPECT_EQ(link->report().last_heartbeat, clock_.now() - 4999ms);
}

TEST_F(WorkerLinkClock, StartingLinkIsLeftToTheStartTimeout) {
  // Before the init reply, liveness is the start timer's business, however long it takes.
  auto link = std::make_shared<WorkerLink>(io_, options_, observer_, clock_);
  clock_.advance(options_.heartbeat_timeout * 10);
  WorkerLinkTestPeer::check_liveness(*link);
  EXPECT_EQ(link->state(), WorkerLink::State::starting);
  EXPECT_TRUE(observer_.losses.empty());
}

TEST_F(WorkerLinkClock, HeldWorkWithoutProgressFailsAfterStallTimeoutAndIsHandedBack) {
  auto link = ready_link();
  heartbeat(*link, /*progress=*/7);
  auto call = generate_call();
  link->dispatch(call);
  ASSERT_EQ(link->inflight(), 1u);
  // Heartbeats keep coming (so the heartbeat check is satisfied) but progress stays at 7.
  for (int i = 0; i < 3; ++i) {
    clock_.advance(4s);
    heartbeat(*link, 7);
    WorkerLinkTestPeer::check_liveness(*link);
  }
  EXPECT_EQ(link->state(), WorkerLink::State::ready) << "exactly stall_timeout is still in time";

  clock_.advance(1ms);
  WorkerLinkTestPeer::check_liveness(*link);
  EXPECT_EQ(link->state(), WorkerLink::State::dead);
  ASSERT_EQ(observer_.losses.size(), 1u);
  EXPECT_NE(observer_.losses[0].reason.find("no progress for 12001 ms while holding 1 requests"),
            std::string::npos)
      << observer_.losses[0].reason;
  EXPECT_TRUE(observer_.losses[0].worker_at_fault);
  ASSERT_EQ(observer_.orphaned.size(), 1u);
  EXPECT_EQ(observer_.orphaned[0], call);
  EXPECT_FALSE(call->done()) << "an orphan goes back to the pool unanswered";
}

TEST_F(WorkerLinkClock, ProgressReportedInHeartbeatsResetsStallDetection) {
  auto link = ready_link();
  heartbeat(*link, 7);
  link->dispatch(generate_call());
  clock_.advance(4s);
  heartbeat(*link, 7);
  clock_.advance(4s);
  heartbeat(*link, 8);  // tokens moved at t=8 s
  clock_.advance(4s);
  heartbeat(*link, 8);
  clock_.advance(1ms);
  WorkerLinkTestPeer::check_liveness(*link);
  EXPECT_EQ(link->state(), WorkerLink::State::ready);

  for (int i = 0; i < 2; ++i) {
    clock_.advance(4s);
    heartbeat(*link, 8);
  }
  WorkerLinkTestPeer::check_liveness(*link);  // t = 20.001 s: 12.001 s since progress
  EXPECT_EQ(link->state(), WorkerLink::State::dead);
  ASSERT_EQ(observer_.losses.size(), 1u);
  EXPECT_NE(observer_.losses[0].reason.find("no progress"), std::string::npos);
}

TEST_F(WorkerLinkClock, IdleLinkIsNeverStalled) {
  auto link = ready_link();
  for (int i = 0; i < 10; ++i) {
    clock_.advance(4s);
    heartbeat(*link, 7);
    WorkerLinkTestPeer::check_liveness(*link);
  }
  EXPECT_EQ(link->state(), WorkerLink::State::ready);
}

TEST_F(WorkerLinkClock, NotificationRateIsCountedPerSecondOfTheLinksClock) {
  options_.max_notifications_per_s = 3;
  auto link = ready_link();
  clock_.advance(1s);  // a fresh window, clear of hello's count
  for (int i = 0; i < 3; ++i) heartbeat(*link);
  EXPECT_EQ(link->state(), WorkerLink::State::ready);
  clock_.advance(1s);  // the next window: three more are fine
  for (int i = 0; i < 3; ++i) heartbeat(*link);
  EXPECT_EQ(link->state(), WorkerLink::State::ready);

  clock_.advance(999ms);  // still the same window: the fourth is one too many
  heartbeat(*link);
  EXPECT_EQ(link->state(), WorkerLink::State::dead);
  ASSERT_EQ(observer_.losses.size(), 1u);
  EXPECT_NE(observer_.losses[0].reason.find("max_notifications_per_s=3"), std::string::npos)
      << observer_.losses[0].reason;
}

TEST_F(WorkerLinkClock, BreakerOpenedByTimeoutsReopensForProbesAfterOpenDuration) {
  options_.breaker.consecutive_failures = 2;
  options_.breaker.open_duration = 5000ms;
  auto link = ready_link();
  link->record_timeout(/*worker_request_id=*/2);
  link->record_timeout(/*worker_request_id=*/3);
  EXPECT_EQ(link->breaker().state(), CircuitBreaker::State::open);
  EXPECT_FALSE(link->can_take(8, clock_.now()));
  clock_.advance(4999ms);
  EXPECT_FALSE(link->can_take(8, clock_.now()));
  clock_.advance(1ms);
  EXPECT_TRUE(link->can_take(8, clock_.now()));
  EXPECT_EQ(link->breaker().state(), CircuitBreaker::State::half_open);
}

}  // namespace
}  // namespace drover::supervisor
