// The rendezvous's log stays small under a flood: one full line per (address, reason), then
// counts in one summary line per interval. Time is passed in explicitly.
#include "broker/rendezvous_log.h"

#include <gtest/gtest.h>

#include <vector>

namespace p2p::broker::rendezvous {
namespace {

using std::chrono::seconds;

TEST(ServiceLogTest, LogsEachAddressAndReasonOnceThenSummarisesCounts) {
  std::vector<std::string> lines;
  ServiceLog log([&](const std::string& l) { lines.push_back(l); }, seconds(60));
  const Clock::time_point t0 = Clock::now();
  for (int i = 0; i < 1000; ++i) log.Refused("10.6.6.6", "rate_limited", "too many requests");
  log.Refused("10.7.7.7", "unsigned", "not signed");
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_NE(lines[0].find("10.6.6.6 (rate_limited): too many requests"), std::string::npos);
  log.Tick(t0 + seconds(1), "state");  // too early for a summary
  EXPECT_EQ(lines.size(), 2u);
  log.Tick(t0 + seconds(61), "3 runs");
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_NE(lines[2].find("999 further refusals"), std::string::npos) << lines[2];
  EXPECT_NE(lines[2].find("10.6.6.6 rate_limited x999"), std::string::npos) << lines[2];
  EXPECT_NE(lines[2].find("now 3 runs"), std::string::npos) << lines[2];
  // Still flooding: counted, not logged again in full.
  log.Refused("10.6.6.6", "rate_limited", "too many requests");
  EXPECT_EQ(lines.size(), 3u);
  // Quiet for a whole interval: the next one is logged in full again.
  log.Tick(t0 + seconds(122), "");
  log.Tick(t0 + seconds(183), "");
  const size_t before = lines.size();
  log.Refused("10.7.7.7", "unsigned", "not signed");
  EXPECT_EQ(lines.size(), before + 1);
}

TEST(ServiceLogTest, BoundsDistinctAddressesAndEventLines) {
  std::vector<std::string> lines;
  ServiceLog log([&](const std::string& l) { lines.push_back(l); }, seconds(60), /*max_keys=*/4,
                 /*event_lines_per_interval=*/2);
  for (int a = 0; a < 100; ++a) log.Refused("10.0.0." + std::to_string(a), "full", "full");
  EXPECT_EQ(lines.size(), 4u);  // the rest are counted under "other addresses"
  for (int e = 0; e < 10; ++e) log.Event("run evicted");
  EXPECT_EQ(lines.size(), 6u);
  log.Tick(Clock::now() + seconds(61), "");
  ASSERT_EQ(lines.size(), 7u);
  EXPECT_NE(lines[6].find("other addresses x96"), std::string::npos) << lines[6];
  EXPECT_NE(lines[6].find("8 events not logged"), std::string::npos) << lines[6];
}

}  // namespace
}  // namespace p2p::broker::rendezvous
