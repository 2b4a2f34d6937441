#include "broker/backoff.h"

#include <gtest/gtest.h>

namespace p2p::broker {
namespace {

using std::chrono::milliseconds;

TEST(Backoff, DoublesWithJitterUpToTheCapAndResets) {
  Backoff b({.first = milliseconds(100), .max = milliseconds(800)});
  const int64_t steps[] = {100, 200, 400, 800, 800, 800};
  for (int64_t d : steps) {
    const int64_t got = b.Next().count();
    EXPECT_GE(got, d / 2) << "step " << d;
    EXPECT_LE(got, d) << "step " << d;
  }
  b.Reset();
  EXPECT_LE(b.Next().count(), 100);
}

TEST(Backoff, OnlyTransientFailuresAreRetried) {
  EXPECT_TRUE(IsRetryable(Unavailable("broker down")));
  EXPECT_TRUE(IsRetryable(Timeout("rpc")));
  EXPECT_TRUE(IsRetryable(Status(StatusCode::kNotFound, "exchange auto-deleted")));
  EXPECT_FALSE(IsRetryable(InvalidArgument("ACCESS_REFUSED")));
  EXPECT_FALSE(IsRetryable(Status(StatusCode::kInternal, "x")));
  EXPECT_FALSE(IsRetryable(Status::Ok()));
}

}  // namespace
}  // namespace p2p::broker
