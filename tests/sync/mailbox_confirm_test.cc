// The Mailbox tells its transport which source carried each authenticated message
// (Transport::ConfirmSender), so that ZeroMQ can bind that connection to the rank (issue 17 item
// 1, broker/zmq_links.h) — and never does so for what it merely admitted without authentication.
#include <gtest/gtest.h>

#include <utility>
#include <vector>

#include "broker/inproc_transport.h"
#include "sync/mailbox.h"

namespace p2p::sync {
namespace {

using namespace std::chrono_literals;
constexpr char kRun[] = "mailbox-confirm-test";

// Tags every received message with source `link` and records the ConfirmSender calls.
class RecordingTransport final : public broker::Transport {
 public:
  RecordingTransport(broker::Transport& inner, uint64_t link) : inner_(inner), link_(link) {}
  int rank() const override { return inner_.rank(); }
  int size() const override { return inner_.size(); }
  Status Connect(broker::Deadline d) override { return inner_.Connect(d); }
  Status Send(int to, std::span<const std::byte> msg) override { return inner_.Send(to, msg); }
  Status Broadcast(std::span<const std::byte> msg) override { return inner_.Broadcast(msg); }
  Result<std::optional<broker::Message>> Receive(broker::Deadline d) override {
    P2P_ASSIGN_OR_RETURN(std::optional<broker::Message> m, inner_.Receive(d));
    if (m) m->link = link_;
    return m;
  }
  broker::TransportStats Stats() const override { return inner_.Stats(); }
  void ConfirmSender(int rank, uint64_t link) override { confirmed.emplace_back(rank, link); }
  Status Close() override { return inner_.Close(); }

  std::vector<std::pair<int, uint64_t>> confirmed;

 private:
  broker::Transport& inner_;
  uint64_t link_;
};

// Accepts what carries the signature "ok", rejects anything else.
class TagAuthenticator final : public Authenticator {
 public:
  Status Sign(broker::Envelope& env) override {
    env.signature = {std::byte{'o'}, std::byte{'k'}};
    return Status::Ok();
  }
  Verdict Verify(const broker::Envelope& env) override {
    if (env.signature == broker::Bytes{std::byte{'o'}, std::byte{'k'}}) return {};
    return {Action::kReject, "bad_mac", "not signed ok"};
  }
};

broker::Envelope Gradient(uint64_t step) {
  broker::Envelope env;
  env.type = broker::MessageType::kGradient;
  env.epoch = 1;
  env.step = step;
  env.body.assign(8, std::byte{1});
  return env;
}

TEST(MailboxConfirmTest, AnAuthenticatedMessageConfirmsItsSourceARejectedOneDoesNot) {
  auto group = broker::MakeInProcGroup(2);
  RecordingTransport recording(*group[0], 42);
  TagAuthenticator auth;
  Mailbox receiver(recording, {.run_id = kRun, .authenticator = &auth});
  Mailbox sender(*group[1], {.run_id = kRun, .authenticator = &auth});
  ASSERT_TRUE(sender.Send(Gradient(1), 0).ok());
  ASSERT_TRUE(receiver.Pump(broker::DeadlineIn(10s)).ok());
  ASSERT_EQ(recording.confirmed.size(), 1u);
  EXPECT_EQ(recording.confirmed[0], (std::pair<int, uint64_t>{1, 42}));

  Mailbox forger(*group[1], {.run_id = kRun});  // no authenticator: sends unsigned
  ASSERT_TRUE(forger.Send(Gradient(2), 0).ok());
  ASSERT_TRUE(receiver.Pump(broker::DeadlineIn(10s)).ok());
  EXPECT_EQ(recording.confirmed.size(), 1u) << "a rejected message confirmed its source";
}

TEST(MailboxConfirmTest, WithoutAuthenticationNothingIsConfirmed) {
  auto group = broker::MakeInProcGroup(2);
  RecordingTransport recording(*group[0], 42);
  Mailbox receiver(recording, {.run_id = kRun});  // --insecure
  Mailbox sender(*group[1], {.run_id = kRun});
  ASSERT_TRUE(sender.Send(Gradient(1), 0).ok());
  ASSERT_TRUE(receiver.Pump(broker::DeadlineIn(10s)).ok());
  EXPECT_TRUE(recording.confirmed.empty());
}

}  // namespace
}  // namespace p2p::sync
