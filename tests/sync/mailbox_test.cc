// Mailbox rejections that a hostile or broken sender can trigger, over real in-process
// transports: each drop is counted under its reason, nothing is parked that was not allowed, and
// a flooding sender cannot make the mailbox hold more than its quota.
#include "sync/mailbox.h"

#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <sstream>

#include "broker/inproc_transport.h"

namespace p2p::sync {
namespace {

using namespace std::chrono_literals;

constexpr char kRun[] = "mailbox-test";

// Encodes an envelope as rank `sender` would and puts it on the wire to rank 0 directly, so the
// test controls every field (a Mailbox would fill receiver and sequence itself).
void SendRaw(broker::Transport& from, broker::MessageType type, uint64_t epoch, uint64_t step,
             int receiver = broker::kAllRanks, size_t body_bytes = 16, uint64_t view = 0) {
  static uint64_t seq = 1;
  broker::Envelope env;
  env.run_id = kRun;
  env.type = type;
  env.sender = from.rank();
  env.receiver = receiver;
  env.epoch = epoch;
  env.step = step;
  env.view = view;
  env.seq = seq++;
  env.body.assign(body_bytes, std::byte{0x5a});
  auto bytes = broker::EncodeEnvelope(env);
  ASSERT_TRUE(bytes.ok()) << bytes.status().ToString();
  ASSERT_TRUE(from.Send(0, *bytes).ok());
}

// Files every message already sent to `box` (each Pump takes one; the sends above are done).
void Drain(Mailbox& box, int n) {
  for (int i = 0; i < n; ++i) {
    ASSERT_TRUE(box.Pump(broker::DeadlineIn(10s)).ok()) << "message " << i << " never arrived";
  }
}

uint64_t Count(const Mailbox& box, const std::string& reason) {
  const auto& by = box.rejects().by_reason;
  return by.contains(reason) ? by.at(reason) : 0;
}

TEST(MailboxTest, RejectsRoundsTooFarAheadOfTheLastCompletedOne) {
  auto group = broker::MakeInProcGroup(2);
  Mailbox box(*group[0], {.run_id = kRun, .max_rounds_ahead = 4});
  SendRaw(*group[1], broker::MessageType::kGradient, 1, 0);
  ASSERT_TRUE(
      box.Collect(broker::MessageType::kGradient, {1, 0}, {1}, broker::DeadlineIn(10s), "round 0")
          .ok());
  SendRaw(*group[1], broker::MessageType::kGradient, 1, 4);  // 4 ahead: parked
  SendRaw(*group[1], broker::MessageType::kGradient, 1, 5);  // 5 ahead: out of window
  SendRaw(*group[1], broker::MessageType::kGradient, 1, 900);
  Drain(box, 3);
  EXPECT_EQ(Count(box, "out_of_window"), 2u);
  EXPECT_EQ(box.parked(), 1u);
  auto got =
      box.Collect(broker::MessageType::kGradient, {1, 4}, {1}, broker::DeadlineIn(10s), "round 4");
  EXPECT_TRUE(got.ok()) << got.status().ToString();
}

TEST(MailboxTest, RejectsEnvelopesAddressedToAnotherRank) {
  auto group = broker::MakeInProcGroup(3);
  Mailbox box(*group[0], {.run_id = kRun});
  SendRaw(*group[1], broker::MessageType::kGradient, 1, 0, /*receiver=*/2);
  SendRaw(*group[1], broker::MessageType::kGradient, 1, 0, /*receiver=*/0);
  Drain(box, 2);
  EXPECT_EQ(Count(box, "misaddressed"), 1u);
  EXPECT_EQ(box.rejects().total(), 1u);
  EXPECT_EQ(box.parked(), 1u) << "the envelope addressed to rank 0 is kept";
}

TEST(MailboxTest, AFloodingSenderIsHeldToItsQuotaAndOthersAreUnaffected) {
  auto group = broker::MakeInProcGroup(3);
  constexpr size_t kQuota = 8;
  constexpr int kFlood = 500;
  Mailbox box(*group[0], {.run_id = kRun, .max_parked_per_sender = kQuota});
  // No round has completed yet, so the round window does not apply: only the quota stops rank 1
  // from parking 500 x 64 KiB for rounds of far future epochs.
  for (int i = 0; i < kFlood; ++i) {
    SendRaw(*group[1], broker::MessageType::kGradient, 1000 + i, 0, broker::kAllRanks, 64 << 10);
  }
  SendRaw(*group[2], broker::MessageType::kGradient, 1, 0);
  Drain(box, kFlood + 1);
  EXPECT_EQ(Count(box, "sender_quota"), kFlood - kQuota);
  EXPECT_EQ(box.parked(), kQuota + 1);
  auto honest = box.Collect(broker::MessageType::kGradient, {1, 0}, {2}, broker::DeadlineIn(10s),
                            "rank 2's gradient");
  EXPECT_TRUE(honest.ok()) << honest.status().ToString();
  // A parked flood message is still collectable: the quota drops only what exceeds it.
  auto first = box.Collect(broker::MessageType::kGradient, {1000, 0}, {1}, broker::DeadlineIn(10s),
                           "rank 1's first");
  EXPECT_TRUE(first.ok()) << first.status().ToString();
}

// Sends the default logger's lines to a string for the test's lifetime.
class CapturedLog {
 public:
  CapturedLog() : previous_(spdlog::default_logger()) {
    auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(text_);
    spdlog::set_default_logger(std::make_shared<spdlog::logger>("captured", sink));
  }
  ~CapturedLog() { spdlog::set_default_logger(previous_); }
  std::string text() const { return text_.str(); }

 private:
  std::ostringstream text_;
  std::shared_ptr<spdlog::logger> previous_;
};

size_t Occurrences(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

TEST(MailboxTest, LogsEachReasonOncePerSenderAndSummarisesWithCounts) {
  auto group = broker::MakeInProcGroup(3);
  CapturedLog log;
  Mailbox box(*group[0], {.run_id = kRun});
  for (int i = 0; i < 5; ++i) SendRaw(*group[1], broker::MessageType::kGradient, 1, 0, 2);
  for (int i = 0; i < 3; ++i) SendRaw(*group[2], broker::MessageType::kGradient, 1, 0, 1);
  Drain(box, 8);
  EXPECT_EQ(Occurrences(log.text(), "dropped a message (misaddressed)"), 2u) << log.text();
  EXPECT_EQ(box.rejects_by_source().at({"misaddressed", 1}), 5u);
  EXPECT_EQ(box.rejects_by_source().at({"misaddressed", 2}), 3u);
  box.LogRejectSummary();
  EXPECT_EQ(Occurrences(log.text(),
                        "dropped 5 message(s) (misaddressed) claiming to come from "
                        "rank 1"),
            1u)
      << log.text();
  EXPECT_EQ(Occurrences(log.text(),
                        "dropped 3 message(s) (misaddressed) claiming to come from "
                        "rank 2"),
            1u)
      << log.text();
}

// ------------------------------------------------------------------ membership views

TEST(MailboxTest, RejectsSendersOutsideTheViewAndRoundsOfEarlierViews) {
  auto group = broker::MakeInProcGroup(3);
  Mailbox box(*group[0], {.run_id = kRun});
  box.InstallView({.id = 1, .members = {0, 1}});
  SendRaw(*group[2], broker::MessageType::kGradient, 1, 0, 0, 16, /*view=*/1);  // evicted rank
  SendRaw(*group[1], broker::MessageType::kGradient, 1, 0, 0, 16, /*view=*/0);  // older view
  SendRaw(*group[1], broker::MessageType::kGradient, 1, 0, 0, 16, /*view=*/1);  // current
  Drain(box, 3);
  EXPECT_EQ(Count(box, "evicted_sender"), 1u);
  EXPECT_EQ(Count(box, "stale_view"), 1u);
  EXPECT_EQ(box.rejects().total(), 2u);
  auto got = box.Collect(broker::MessageType::kGradient, {.epoch = 1, .step = 0, .view = 1}, {1},
                         broker::DeadlineIn(10s), "view 1 round");
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(got->at(1).view, 1u);
}

TEST(MailboxTest, HeartbeatsAreConsumedNotParkedOrRejected) {
  auto group = broker::MakeInProcGroup(2);
  Mailbox box(*group[0], {.run_id = kRun});
  box.StartFailureDetection(10s);
  for (int i = 0; i < 3; ++i) SendRaw(*group[1], broker::MessageType::kHeartbeat, 0, 0, 0, 0);
  Drain(box, 3);
  EXPECT_EQ(box.parked(), 0u);
  EXPECT_EQ(box.rejects().total(), 0u);
  EXPECT_TRUE(box.Suspects().empty());
}

TEST(MailboxTest, CollectStopsWaitingWhenAMemberFallsSilent) {
  auto group = broker::MakeInProcGroup(3);
  Mailbox box(*group[0], {.run_id = kRun});
  box.StartFailureDetection(300ms);
  SendRaw(*group[1], broker::MessageType::kGradient, 1, 0);  // rank 1 answers, rank 2 never does
  const auto start = broker::Clock::now();
  auto got = box.Collect(broker::MessageType::kGradient, {1, 0}, {1, 2}, broker::DeadlineIn(60s),
                         "round 0");
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().code(), StatusCode::kUnavailable) << got.status().ToString();
  EXPECT_NE(got.status().message().find("2"), std::string::npos) << got.status().ToString();
  EXPECT_LT(broker::Clock::now() - start, 30s) << "waited for the deadline, not the detector";
  // Rank 2 for sure; rank 1 too by now if the detector ran past 300 ms after its gradient.
  const auto suspects = box.Suspects();
  EXPECT_NE(std::find(suspects.begin(), suspects.end(), 2), suspects.end());
}

}  // namespace
}  // namespace p2p::sync
