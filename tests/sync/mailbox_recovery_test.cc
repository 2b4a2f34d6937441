// Recovery between live members (sync/mailbox_recovery.cc): a round message lost on the way is
// asked for again and re-sent, a slow peer is not made to send twice, hostile RESENDs are
// refused, and a member that missed a VIEW_INSTALL is sent it again. Over in-process and real
// ZeroMQ transports; the loss itself is scripted (tests/sync/lossy_transport.h).
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "sync/mailbox.h"
#include "sync/membership/heartbeat.h"
#include "sync/membership/view_messages.h"
#include "tests/sync/lossy_transport.h"
#include "tests/sync/transport_group.h"

namespace p2p::sync {
namespace {

using namespace std::chrono_literals;
using broker::MessageType;

constexpr auto kSuspectAfter = 2s;  // resend_after() = 1 s
constexpr auto kHeartbeat = 100ms;
constexpr int kRounds = 3;

broker::Envelope Gradient(int rank, uint64_t step) {
  broker::Envelope env;
  env.type = MessageType::kGradient;
  env.step = step;
  env.body = {std::byte(rank), std::byte(step)};
  return env;
}

// Two ranks exchange kRounds gradients, each rank on its own thread with heartbeats running.
// `before_send(rank, step)` runs before each send (a slow peer computes there).
struct Exchange {
  std::vector<Status> results{2, Status::Ok()};
  std::vector<Mailbox::RecoveryCounts> recovery{2};
  std::vector<uint64_t> rejected{2, 0};

  void Run(std::vector<broker::Transport*> transports,
           const std::function<void(int, uint64_t)>& before_send) {
    std::vector<std::thread> threads;
    for (int r = 0; r < 2; ++r) {
      threads.emplace_back([&, r] {
        Mailbox mailbox(*transports[r], {.run_id = "recovery-test"});
        mailbox.StartFailureDetection(kSuspectAfter);
        std::optional<membership::Heartbeat> heartbeat;
        heartbeat.emplace(mailbox, kHeartbeat);
        for (uint64_t step = 1; step <= kRounds && results[r].ok(); ++step) {
          before_send(r, step);
          results[r] = mailbox.Send(Gradient(r, step));
          if (!results[r].ok()) break;
          auto got = mailbox.Collect(MessageType::kGradient, Round{0, step, 0}, {1 - r},
                                     broker::DeadlineIn(30s), "test round");
          if (!got.ok()) {
            results[r] = got.status();
          } else if (got->at(1 - r).body != Gradient(1 - r, step).body) {
            results[r] = Internal("rank {} got a wrong body in step {}", r, step);
          }
        }
        // Keep answering until the other rank is done with what it needs from us.
        for (int i = 0; i < 30 && mailbox.Pump(broker::DeadlineIn(100ms)).ok(); ++i) {
        }
        heartbeat.reset();
        recovery[r] = mailbox.recovery();
        rejected[r] = mailbox.rejects().total();
      });
    }
    for (auto& t : threads) t.join();
  }
};

class MailboxRecoveryTest : public ::testing::TestWithParam<std::string> {};

TEST_P(MailboxRecoveryTest, ALostGradientIsAskedForAndSentAgain) {
  auto ts = test::ConnectedTransports(GetParam(), 2, "recovery-test");
  ASSERT_TRUE(ts.ok()) << ts.status().message();
  std::atomic<int> dropped{0};
  test::LossyTransport lossy(*(*ts)[1], [&](int, const broker::Envelope& e) {
    return e.type == MessageType::kGradient && e.step == 1 && dropped.fetch_add(1) == 0;
  });
  Exchange x;
  x.Run({(*ts)[0].get(), &lossy}, [](int, uint64_t) {});
  EXPECT_TRUE(x.results[0].ok()) << x.results[0].message();
  EXPECT_TRUE(x.results[1].ok()) << x.results[1].message();
  EXPECT_GE(dropped.load(), 1);
  EXPECT_GE(x.recovery[0].resend_requests, 1u);
  EXPECT_EQ(x.recovery[1].resent, 1u);
}

TEST_P(MailboxRecoveryTest, ASlowPeerIsAskedButNotMadeToSendTwice) {
  auto ts = test::ConnectedTransports(GetParam(), 2, "recovery-test");
  ASSERT_TRUE(ts.ok()) << ts.status().message();
  Exchange x;
  // Rank 1 "computes" its first gradient for longer than resend_after(): rank 0 asks, but every
  // request left before the gradient did, so rank 1 does not send it twice.
  x.Run({(*ts)[0].get(), (*ts)[1].get()}, [](int rank, uint64_t step) {
    if (rank == 1 && step == 1) std::this_thread::sleep_for(2500ms);
  });
  EXPECT_TRUE(x.results[0].ok()) << x.results[0].message();
  EXPECT_TRUE(x.results[1].ok()) << x.results[1].message();
  EXPECT_GE(x.recovery[0].resend_requests, 1u);
  EXPECT_EQ(x.recovery[1].resent, 0u);
  EXPECT_EQ(x.rejected[0], 0u);  // no duplicate arrived
}

INSTANTIATE_TEST_SUITE_P(Transports, MailboxRecoveryTest, ::testing::Values("inproc", "zmq"));

TEST(MailboxRecovery, HostileResendsAreRejectedAndCounted) {
  auto ts = test::ConnectedTransports("inproc", 2, "recovery-test");
  ASSERT_TRUE(ts.ok());
  Mailbox asker(*(*ts)[0], {.run_id = "recovery-test"});
  Mailbox answerer(*(*ts)[1], {.run_id = "recovery-test"});
  ASSERT_TRUE(answerer.Send(Gradient(1, 1), 0).ok());  // something it could resend
  broker::Envelope short_body;
  short_body.type = MessageType::kResend;
  short_body.step = 1;
  short_body.body = {std::byte(MessageType::kGradient)};
  ASSERT_TRUE(asker.Send(short_body, 1).ok());
  broker::Envelope not_a_round_type = short_body;  // asks for heartbeats again
  not_a_round_type.body = broker::Bytes(9, std::byte{0xff});
  not_a_round_type.body[0] = std::byte(MessageType::kHeartbeat);
  ASSERT_TRUE(asker.Send(not_a_round_type, 1).ok());
  for (int i = 0; i < 2; ++i) ASSERT_TRUE(answerer.Pump(broker::DeadlineIn(5s)).ok());
  EXPECT_EQ(answerer.rejects().by_reason.at("malformed_resend"), 2u);
  EXPECT_EQ(answerer.recovery().resent, 0u);
}

TEST(MailboxRecovery, AMemberThatMissedTheInstallIsSentItAgain) {
  // Rank 0 installed view 1 = {0, 1} (rank 2 evicted); rank 1 missed the install and still
  // heartbeats in view 0. Rank 0 sends it the install again; rank 1 sees a view change pending.
  auto ts = test::ConnectedTransports("inproc", 3, "recovery-test");
  ASSERT_TRUE(ts.ok());
  const membership::ViewInstall decided{0, Round{0, 4, 0}, {0, 1}};
  std::atomic<bool> done{false};
  Mailbox::RecoveryCounts coordinator_counts;
  std::thread coordinator([&] {
    Mailbox mailbox(*(*ts)[0], {.run_id = "recovery-test"});
    broker::Envelope install;
    install.type = MessageType::kViewInstall;
    install.epoch = 1;
    install.body = membership::EncodeViewInstall(decided);
    mailbox.InstallView(membership::View{1, {0, 1}});
    mailbox.RememberInstall(install);
    mailbox.StartFailureDetection(1s);
    const auto deadline = broker::DeadlineIn(20s);
    while (!done && broker::Clock::now() < deadline) {
      Status s = mailbox.Pump(broker::DeadlineIn(100ms));
      if (!s.ok() && s.code() != StatusCode::kTimeout) break;
    }
    coordinator_counts = mailbox.recovery();
  });
  Mailbox laggard(*(*ts)[1], {.run_id = "recovery-test"});
  laggard.StartFailureDetection(1s);
  std::optional<membership::Heartbeat> heartbeat;
  heartbeat.emplace(laggard, kHeartbeat);
  const auto deadline = broker::DeadlineIn(20s);
  while (!laggard.ViewChangePending() && broker::Clock::now() < deadline) {
    Status s = laggard.Pump(broker::DeadlineIn(100ms));
    ASSERT_TRUE(s.ok() || s.code() == StatusCode::kTimeout) << s.message();
  }
  heartbeat.reset();
  done = true;
  coordinator.join();
  ASSERT_TRUE(laggard.ViewChangePending());
  auto got = laggard.TakeParked(MessageType::kViewInstall, [](const auto&) { return true; });
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->epoch, 1u);
  auto install = membership::DecodeViewInstall(got->body, 3);
  ASSERT_TRUE(install.ok()) << install.status().message();
  EXPECT_EQ(*install, decided);
  EXPECT_GE(coordinator_counts.installs_forwarded, 1u);
}

}  // namespace
}  // namespace p2p::sync
