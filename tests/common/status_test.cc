#include "common/status.h"

#include <gtest/gtest.h>

namespace p2p {
namespace {

Result<int> Half(int x) {
  if (x % 2 != 0) return InvalidArgument("{} is odd", x);
  return x / 2;
}

Result<int> Quarter(int x) {
  P2P_ASSIGN_OR_RETURN(int half, Half(x));
  return Half(half);
}

TEST(StatusTest, OkAndErrorCarryCodeAndMessage) {
  EXPECT_TRUE(Status::Ok().ok());
  Status s = NotFound("no file {}", "/x");
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.code(), StatusCode::kNotFound);
  EXPECT_EQ(s.ToString(), "not found: no file /x");
  EXPECT_EQ(s.Annotate("loading").message(), "loading: no file /x");
}

TEST(StatusTest, AssignOrReturnPropagatesTheFirstError) {
  EXPECT_EQ(Quarter(8).value(), 2);
  Result<int> r = Quarter(6);  // 6/2 = 3 is odd
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), "3 is odd");
}

TEST(StatusTest, CheckThrowsWithFileAndLine) {
  try {
    P2P_CHECK(1 + 1 == 3, "math is {}", "broken");
    FAIL() << "P2P_CHECK did not throw";
  } catch (const InvariantError& e) {
    EXPECT_NE(std::string(e.what()).find("status_test.cc"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("math is broken"), std::string::npos);
  }
}

}  // namespace
}  // namespace p2p
