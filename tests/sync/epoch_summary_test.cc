#include "sync/epoch_summary.h"

#include <gtest/gtest.h>

#include <cstring>
#include <limits>

#include "tests/sync/run_group.h"

namespace p2p::sync {
namespace {

using namespace std::chrono_literals;

EpochTotals TotalsOf(int r, const std::string& hash) {
  return {.train_loss_sum = 0.5 * (r + 1),
          .train_samples = uint64_t(100 + r),
          .val_loss_sum = 0.25 * (r + 1),
          .val_samples = 10,
          .test_correct = uint64_t(7 + r),
          .test_samples = 10,
          .param_hash = hash};
}

TEST(EpochSummaryTest, EveryPeerGetsTheSameRunWideTotals) {
  std::vector<EpochTotals> got(3);
  const auto statuses = RunGroup(3, [&](int r, Mailbox& mailbox) -> Status {
    P2P_ASSIGN_OR_RETURN(got[r], ExchangeEpochTotals(mailbox, 1, TotalsOf(r, "0123456789abcdef"),
                                                     broker::DeadlineIn(5s)));
    return Status::Ok();
  });
  for (const auto& s : statuses) ASSERT_TRUE(s.ok()) << s.ToString();
  for (const auto& t : got) {
    EXPECT_EQ(t.train_samples, 303u);
    EXPECT_DOUBLE_EQ(t.train_loss_sum, 3.0);
    EXPECT_DOUBLE_EQ(t.val_loss_sum, 1.5);
    EXPECT_EQ(t.val_samples, 30u);
    EXPECT_EQ(t.test_correct, 24u);
    EXPECT_EQ(t.test_samples, 30u);
    EXPECT_EQ(t.param_hash, "0123456789abcdef");
  }
}

TEST(EpochSummaryTest, DivergedParametersAreAnErrorNamingTheRank) {
  const auto statuses = RunGroup(3, [&](int r, Mailbox& mailbox) -> Status {
    const std::string hash = r == 1 ? "ffffffffffffffff" : "0123456789abcdef";
    return ExchangeEpochTotals(mailbox, 4, TotalsOf(r, hash), broker::DeadlineIn(5s)).status();
  });
  EXPECT_EQ(statuses[0].code(), StatusCode::kInternal);
  EXPECT_NE(statuses[0].message().find("rank 1 has ffffffffffffffff"), std::string::npos)
      << statuses[0].message();
  EXPECT_NE(statuses[0].message().find("after epoch 4"), std::string::npos);
}

TEST(EpochSummaryTest, MalformedBodiesAreRejected) {
  const auto good = EncodeEpochTotals(TotalsOf(0, "0123456789abcdef"));
  ASSERT_TRUE(DecodeEpochTotals(good).ok());
  EXPECT_EQ(DecodeEpochTotals(std::span(good).first(good.size() - 1)).status().code(),
            StatusCode::kDataLoss);
  auto bad_hash = good;
  bad_hash.back() = std::byte{'Z'};
  EXPECT_EQ(DecodeEpochTotals(bad_hash).status().code(), StatusCode::kDataLoss);
  auto too_many_correct = TotalsOf(0, "0123456789abcdef");
  too_many_correct.test_correct = 11;
  EXPECT_EQ(DecodeEpochTotals(EncodeEpochTotals(too_many_correct)).status().code(),
            StatusCode::kDataLoss);
  auto nan_loss = TotalsOf(0, "0123456789abcdef");
  nan_loss.val_loss_sum = std::nan("");
  EXPECT_EQ(DecodeEpochTotals(EncodeEpochTotals(nan_loss)).status().code(), StatusCode::kDataLoss);
}

// BatchNorm running statistics: every peer adopts the same train_samples-weighted mean.
TEST(EpochSummaryTest, BuffersBecomeTheSampleWeightedMeanOnEveryPeer) {
  std::vector<EpochTotals> got(3);
  const auto statuses = RunGroup(3, [&](int r, Mailbox& mailbox) -> Status {
    EpochTotals mine = TotalsOf(r, "0123456789abcdef");  // train_samples 100 + r
    mine.buffers = {float(r), 0.1f * float(r + 1), -3.0f};
    P2P_ASSIGN_OR_RETURN(got[r], ExchangeEpochTotals(mailbox, 2, mine, broker::DeadlineIn(5s)));
    return Status::Ok();
  });
  for (const auto& s : statuses) ASSERT_TRUE(s.ok()) << s.ToString();
  // (100*0 + 101*1 + 102*2) / 303 and (100*0.1 + 101*0.2 + 102*0.3) / 303.
  ASSERT_EQ(got[0].buffers.size(), 3u);
  EXPECT_NEAR(got[0].buffers[0], 305.0 / 303.0, 1e-6);
  EXPECT_NEAR(got[0].buffers[1], (10.0 + 20.2 + 30.6) / 303.0, 1e-6);
  EXPECT_FLOAT_EQ(got[0].buffers[2], -3.0f);
  for (const auto& t : got) EXPECT_EQ(t.buffers, got[0].buffers);  // bitwise, on every peer
}

TEST(EpochSummaryTest, WeightedMeanBuffersUsesEqualWeightsWhenNobodyTrained) {
  EpochTotals a, b;
  a.buffers = {1.0f};
  b.buffers = {3.0f};
  EXPECT_EQ(WeightedMeanBuffers({&a, &b}), std::vector<float>{2.0f});
  a.train_samples = 3;  // now only a counts
  EXPECT_EQ(WeightedMeanBuffers({&a, &b}), std::vector<float>{1.0f});
}

TEST(EpochSummaryTest, BuffersOfTheWrongCountOrNonFiniteAreRejected) {
  auto t = TotalsOf(0, "0123456789abcdef");
  t.buffers = {1.0f, 2.0f};
  const auto body = EncodeEpochTotals(t);
  ASSERT_TRUE(DecodeEpochTotals(body, 2).ok());
  EXPECT_EQ(DecodeEpochTotals(body, 2)->buffers, t.buffers);
  const auto wrong = DecodeEpochTotals(body, 3);
  EXPECT_EQ(wrong.status().code(), StatusCode::kDataLoss);
  EXPECT_NE(wrong.status().message().find("3 BatchNorm buffer values"), std::string::npos)
      << wrong.status().message();
  EXPECT_EQ(DecodeEpochTotals(body, 0).status().code(), StatusCode::kDataLoss);
  t.buffers[1] = std::numeric_limits<float>::infinity();
  EXPECT_EQ(DecodeEpochTotals(EncodeEpochTotals(t), 2).status().code(), StatusCode::kDataLoss);
}

// Restarted ranks asking to rejoin ride on the totals (docs/membership.md, "Rejoining"): the
// list is left out when empty, so a run without joiners sends exactly the bytes it always did.
TEST(EpochSummaryTest, JoinersAreAnOptionalAscendingListAfterTheTotals) {
  EpochTotals t = TotalsOf(0, "0123456789abcdef");
  const auto plain = EncodeEpochTotals(t);
  EXPECT_EQ(plain.size(), 6u * 8 + 16);
  t.joiners = {3, 5};
  const auto with = EncodeEpochTotals(t);
  ASSERT_EQ(with.size(), plain.size() + 4 * 3);
  auto decoded = DecodeEpochTotals(with);
  ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
  EXPECT_EQ(decoded->joiners, (std::vector<int>{3, 5}));
  EXPECT_TRUE(DecodeEpochTotals(plain)->joiners.empty());

  // A count that does not match the bytes, a truncated list, descending or duplicate ranks.
  auto set_u32 = [](broker::Bytes& b, size_t at, uint32_t v) {
    std::memcpy(b.data() + at, &v, sizeof v);
  };
  auto wrong_count = with;
  set_u32(wrong_count, plain.size(), 3);
  EXPECT_EQ(DecodeEpochTotals(wrong_count).status().code(), StatusCode::kDataLoss);
  EXPECT_EQ(DecodeEpochTotals(std::span(with).first(with.size() - 2)).status().code(),
            StatusCode::kDataLoss);
  auto descending = with;
  set_u32(descending, plain.size() + 4, 5);
  set_u32(descending, plain.size() + 8, 3);
  EXPECT_EQ(DecodeEpochTotals(descending).status().code(), StatusCode::kDataLoss);
  auto huge = with;
  set_u32(huge, plain.size(), 0xffffffffu);
  EXPECT_EQ(DecodeEpochTotals(huge).status().code(), StatusCode::kDataLoss);
}

// Every member of the view gets the union of the joiners the members hold, so all admit the same
// ranks; a rank inside the view is never a joiner.
TEST(EpochSummaryTest, EveryMemberGetsTheUnionOfTheJoiners) {
  std::vector<EpochTotals> got(4);
  const auto statuses = RunGroup(4, [&](int r, Mailbox& mailbox) -> Status {
    if (r == 3) return Status::Ok();  // evicted: it takes no part
    mailbox.InstallView({1, {0, 1, 2}});
    EpochTotals mine = TotalsOf(r, "0123456789abcdef");
    if (r == 0) mine.joiners = {3};
    if (r == 2) mine.joiners = {1};  // a member: ignored
    P2P_ASSIGN_OR_RETURN(got[r], ExchangeEpochTotals(mailbox, 2, mine, broker::DeadlineIn(5s)));
    return Status::Ok();
  });
  for (const auto& s : statuses) ASSERT_TRUE(s.ok()) << s.ToString();
  for (int r = 0; r < 3; ++r) EXPECT_EQ(got[r].joiners, std::vector<int>{3}) << "rank " << r;
}

}  // namespace
}  // namespace p2p::sync
