#include "sync/epoch_summary.h"

#include <gtest/gtest.h>

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

}  // namespace
}  // namespace p2p::sync
