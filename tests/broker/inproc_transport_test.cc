#include "broker/inproc_transport.h"

#include <gtest/gtest.h>

#include <set>
#include <string>
#include <thread>

namespace p2p::broker {
namespace {

using std::chrono::milliseconds;

Bytes Text(const std::string& s) {
  Bytes b(s.size());
  std::memcpy(b.data(), s.data(), s.size());
  return b;
}

std::string AsText(const Bytes& b) {
  return std::string(reinterpret_cast<const char*>(b.data()), b.size());
}

// Runs fn(rank) on `size` threads and joins them.
void RunRanks(int size, const std::function<void(int)>& fn) {
  std::vector<std::thread> threads;
  for (int r = 0; r < size; ++r) threads.emplace_back(fn, r);
  for (std::thread& t : threads) t.join();
}

class InProcGroupTest : public ::testing::TestWithParam<int> {};

// Every rank broadcasts "b<r>" and sends "p<r>" to its successor, then expects the W-1
// broadcasts of the others plus its predecessor's point-to-point message.
TEST_P(InProcGroupTest, BroadcastAndPointToPoint) {
  const int size = GetParam();
  auto group = MakeInProcGroup(size);
  RunRanks(size, [&](int r) {
    Transport& t = *group[r];
    ASSERT_TRUE(t.Connect(DeadlineIn(milliseconds(5000))).ok());
    ASSERT_TRUE(t.Broadcast(Text(fmt::format("b{}", r))).ok());
    if (size > 1) {
      ASSERT_TRUE(t.Send((r + 1) % size, Text(fmt::format("p{}", r))).ok());
    }
    std::multiset<std::string> expected, got;
    for (int s = 0; s < size; ++s) {
      if (s != r) expected.insert(fmt::format("b{}", s));
    }
    if (size > 1) expected.insert(fmt::format("p{}", (r + size - 1) % size));
    while (got.size() < expected.size()) {
      auto m = t.Receive(DeadlineIn(milliseconds(5000)));
      ASSERT_TRUE(m.ok()) << m.status().ToString();
      ASSERT_TRUE(m->has_value()) << "rank " << r << " timed out";
      const std::string text = AsText((*m)->payload);
      EXPECT_EQ(text.substr(1), std::to_string((*m)->from_rank));
      got.insert(text);
    }
    EXPECT_EQ(got, expected);
    auto extra = t.Receive(DeadlineIn(milliseconds(20)));
    ASSERT_TRUE(extra.ok());
    EXPECT_FALSE(extra->has_value());
    const TransportStats st = t.Stats();
    EXPECT_EQ(st.messages_received, expected.size());
    EXPECT_EQ(st.messages_sent, static_cast<uint64_t>(size - 1 + (size > 1)));
  });
}

INSTANTIATE_TEST_SUITE_P(Sizes, InProcGroupTest, ::testing::Range(1, 9));

TEST(InProcTransportTest, ReceiveTimesOutNearTheDeadline) {
  auto group = MakeInProcGroup(2);
  const auto start = Clock::now();
  auto m = group[0]->Receive(start + milliseconds(150));
  const auto elapsed = Clock::now() - start;
  ASSERT_TRUE(m.ok());
  EXPECT_FALSE(m->has_value());
  EXPECT_GE(elapsed, milliseconds(150));
  EXPECT_LT(elapsed, milliseconds(400));
}

TEST(InProcTransportTest, PreservesOrderPerSender) {
  auto group = MakeInProcGroup(2);
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(group[0]->Send(1, Text(std::to_string(i))).ok());
  for (int i = 0; i < 100; ++i) {
    auto m = group[1]->Receive(DeadlineIn(milliseconds(100)));
    ASSERT_TRUE(m.ok() && m->has_value());
    EXPECT_EQ(AsText((*m)->payload), std::to_string(i));
  }
}

TEST(InProcTransportTest, ConnectTimeoutNamesMissingRanks) {
  auto group = MakeInProcGroup(4);
  Status s0, s2;
  RunRanks(
      2, [&](int i) { (i == 0 ? s0 : s2) = group[i * 2]->Connect(DeadlineIn(milliseconds(100))); });
  EXPECT_EQ(s0.code(), StatusCode::kTimeout);
  EXPECT_NE(s0.message().find("[1, 3]"), std::string::npos) << s0.ToString();
  EXPECT_EQ(s2.code(), StatusCode::kTimeout);
}

TEST(InProcTransportTest, RejectsBadRanks) {
  auto group = MakeInProcGroup(3);
  EXPECT_EQ(group[0]->Send(0, Text("x")).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(group[0]->Send(3, Text("x")).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(group[0]->Send(-1, Text("x")).code(), StatusCode::kInvalidArgument);
}

TEST(InProcTransportTest, ClosedPeersAreUnavailable) {
  auto group = MakeInProcGroup(3);
  ASSERT_TRUE(group[2]->Close().ok());
  ASSERT_TRUE(group[2]->Close().ok());  // idempotent
  EXPECT_EQ(group[0]->Send(2, Text("x")).code(), StatusCode::kUnavailable);
  Status b = group[0]->Broadcast(Text("y"));
  EXPECT_EQ(b.code(), StatusCode::kUnavailable);
  EXPECT_NE(b.message().find("[2]"), std::string::npos);
  auto m = group[1]->Receive(DeadlineIn(milliseconds(100)));  // rank 1 still got the broadcast
  ASSERT_TRUE(m.ok() && m->has_value());
  EXPECT_EQ(AsText((*m)->payload), "y");
  EXPECT_EQ(group[2]->Receive(DeadlineIn(milliseconds(10))).status().code(),
            StatusCode::kUnavailable);
}

TEST(InProcTransportTest, CloseWakesABlockedReceive) {
  auto group = MakeInProcGroup(2);
  std::thread closer([&] {
    std::this_thread::sleep_for(milliseconds(50));
    (void)group[1]->Close();
  });
  const auto start = Clock::now();
  auto m = group[1]->Receive(DeadlineIn(milliseconds(5000)));
  closer.join();
  EXPECT_EQ(m.status().code(), StatusCode::kUnavailable);
  EXPECT_LT(Clock::now() - start, milliseconds(2000));
}

}  // namespace
}  // namespace p2p::broker
