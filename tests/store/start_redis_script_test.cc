// scripts/start-redis.sh starts a usable private database and stops it.
#include <gtest/gtest.h>
#include <signal.h>

#include <cstdlib>
#include <fstream>

#include "store/client.h"
#include "tests/store/redis_server.h"
#include "tests/support/subprocess.h"

namespace p2p::store {
namespace {

std::string Script() { return P2P_START_REDIS_SCRIPT; }

TEST(StartRedisScriptTest, StartsWithPasswordFileAndModuleThenStops) {
  test::TempDir dir;
  const std::string db_dir = dir.File("db");
  setenv("P2P_REDIS_MODULE", test::RedisModulePath().c_str(), 1);
  test::ProcessResult start =
      test::RunProcess({"bash", Script(), db_dir}, std::chrono::seconds(60));
  ASSERT_EQ(start.exit_code, 0) << start.err;
  EXPECT_NE(start.out.find("unix://" + db_dir + "/redis.sock"), std::string::npos) << start.out;
  const int pid = std::stoi(test::ReadFile(db_dir + "/redis.pid"));

  ConnectOptions o;
  o.address = ParseStoreUrl("unix://" + db_dir + "/redis.sock").value();
  o.password = ResolvePassword(o.address, db_dir + "/password").value();
  {
    Result<RedisClient> c = RedisClient::Connect(o);
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    EXPECT_TRUE(c->RequireModule().ok());
    // The password never appears on redis-server's command line.
    const std::string cmdline = test::ReadFile("/proc/" + std::to_string(pid) + "/cmdline");
    EXPECT_EQ(cmdline.find(*o.password), std::string::npos);
  }
  test::ProcessResult stop =
      test::RunProcess({"bash", Script(), "--stop", db_dir}, std::chrono::seconds(60));
  EXPECT_EQ(stop.exit_code, 0) << stop.err;
  EXPECT_NE(kill(pid, 0), 0) << "redis-server " << pid << " still running";
  EXPECT_FALSE(RedisClient::Connect(o).ok());
}

TEST(StartRedisScriptTest, MissingModuleIsAClearError) {
  test::TempDir dir;
  setenv("P2P_REDIS_MODULE", dir.File("none.so").c_str(), 1);
  test::ProcessResult start =
      test::RunProcess({"bash", Script(), dir.File("db")}, std::chrono::seconds(60));
  EXPECT_NE(start.exit_code, 0);
  EXPECT_NE(start.err.find("none.so' not found"), std::string::npos) << start.err;
}

}  // namespace
}  // namespace p2p::store
