// SPIRT's database heartbeat against real redis-servers and real mailboxes: a database that stops
// answering makes its peer suspected (the failure detector's path for a silent member), naming
// the database; the others stay members.
#include "spirt/db_heartbeat.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "broker/inproc_transport.h"
#include "tests/store/redis_server.h"

namespace p2p::spirt {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(DbHeartbeatTest, AnUnreachableDatabaseMakesItsPeerSuspected) {
  auto group = broker::MakeInProcGroup(3);
  sync::Mailbox mailbox(*group[0], {.run_id = "hb"});
  // Peers stay audible for a minute: only the database heartbeat can suspect anyone here.
  mailbox.StartFailureDetection(std::chrono::minutes(1));
  std::vector<std::unique_ptr<test::RedisServer>> servers;
  std::vector<store::ConnectOptions> databases;
  for (int r = 0; r < 3; ++r) {
    servers.push_back(std::make_unique<test::RedisServer>());
    ASSERT_TRUE(servers.back()->ready()) << servers.back()->log();
    databases.push_back(servers.back()->connect_options());
  }
  DbHeartbeat heartbeat(mailbox, databases, 0, {0, 1, 2}, std::chrono::milliseconds(50),
                        std::chrono::seconds(5));
  servers[1]->Stop();
  const auto why =
      heartbeat.WaitUnreachable(1, std::chrono::steady_clock::now() + std::chrono::minutes(1));
  ASSERT_TRUE(why.has_value()) << "rank 1's stopped database was never found unreachable";
  EXPECT_THAT(*why, HasSubstr(servers[1]->url()));
  EXPECT_THAT(mailbox.Suspects(), ElementsAre(1));
  EXPECT_GT(heartbeat.pings(), 0u);
  // Rank 2's database answered every PING meanwhile.
  EXPECT_FALSE(heartbeat.WaitUnreachable(2, std::chrono::steady_clock::now()).has_value());
}

TEST(DbHeartbeatTest, AFormerMemberIsNoLongerPinged) {
  auto group = broker::MakeInProcGroup(2);
  sync::Mailbox mailbox(*group[0], {.run_id = "hb2"});
  mailbox.StartFailureDetection(std::chrono::minutes(1));
  test::RedisServer own, other;
  ASSERT_TRUE(own.ready() && other.ready());
  DbHeartbeat heartbeat(mailbox, {own.connect_options(), other.connect_options()}, 0, {0},
                        std::chrono::milliseconds(20), std::chrono::seconds(5));
  other.Stop();
  // Rank 1 is not a member: its database is never PINGed, so never reported. The bound is how
  // long we look, not a wait for anything to happen (the heartbeat PINGs every 20 ms).
  EXPECT_FALSE(
      heartbeat
          .WaitUnreachable(1, std::chrono::steady_clock::now() + std::chrono::milliseconds(500))
          .has_value());
  EXPECT_TRUE(mailbox.Suspects().empty());
}

}  // namespace
}  // namespace p2p::spirt
