// `--strategy spirt` end to end: real `p2ptrain launch` / `peer` processes, real redis-servers
// (started by launch --store redis, or by the test), Fashion-MNIST. Labels: store.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>

#include "tests/store/redis_server.h"
#include "tests/support/file_watch.h"
#include "tests/support/subprocess.h"

namespace p2p {
namespace {

using test::P2ptrainBin;
using test::RunProcess;
using ::testing::HasSubstr;

std::vector<std::string> Launch(std::vector<std::string> args) {
  args.insert(args.begin(), {P2ptrainBin(), "launch"});
  return args;
}

std::vector<nlohmann::json> LastRecords(const std::string& metrics_dir, int size) {
  std::vector<nlohmann::json> last;
  for (int rank = 0; rank < size; ++rank) {
    const auto lines = test::ReadLines(metrics_dir + "/rank-" + std::to_string(rank) + ".jsonl");
    EXPECT_FALSE(lines.empty()) << "rank " << rank;
    last.push_back(lines.empty() ? nlohmann::json{} : nlohmann::json::parse(lines.back()));
  }
  return last;
}

TEST(SpirtCliTest, UsageErrorsExitWith2AndSayWhatIsWrong) {
  test::TempDir dir;
  std::ofstream(dir.File("stores")) << "0 redis://127.0.0.1:1/0\n1 redis://127.0.0.1:2/0\n";
  struct Case {
    std::vector<std::string> args;
    std::string expected;
  };
  const std::vector<Case> cases = {
      {{"peer", "--size", "2", "--rank", "0", "--strategy", "spirt"}, "needs --store-peers FILE"},
      {{"peer", "--size", "2", "--rank", "0", "--store-peers", dir.File("stores")},
       "are for --strategy spirt"},
      {{"peer", "--size", "2", "--rank", "0", "--strategy", "spirt", "--store-peers",
        dir.File("stores"), "--compression", "fp16"},
       "cannot use --compression fp16"},
      {{"peer", "--size", "2", "--rank", "0", "--strategy", "spirt", "--store-peers",
        dir.File("stores"), "--aggregation", "median"},
       "cannot use --aggregation median"},
      {{"peer", "--size", "2", "--rank", "0", "--strategy", "spirt", "--store-peers",
        dir.File("stores"), "--in-db", "maybe"},
       "--in-db"},
      {{"launch", "--size", "2", "--store", "redis", "--metrics-dir", dir.File("m"), "--",
        "--store-peers", "x"},
       "--store-peers after `--` conflicts with launch --store redis"},
      {{"launch", "--size", "2", "--store", "mongo", "--metrics-dir", dir.File("m")}, "--store"},
  };
  for (const Case& c : cases) {
    auto args = c.args;
    args.insert(args.begin(), P2ptrainBin());
    auto r = RunProcess(args, std::chrono::minutes(1));
    EXPECT_EQ(r.exit_code, 2) << c.expected << ": " << r.err;
    EXPECT_THAT(r.err, HasSubstr(c.expected)) << r.err;
  }
}

std::vector<std::string> SmallRun(const std::string& metrics_dir, int size) {
  return Launch({"--size", std::to_string(size), "--run-id", "spirt-small", "--metrics-dir",
                 metrics_dir, "--progress", "off", "--", "--dataset", "synthetic",
                 "--synthetic-train", "2000", "--model", "logreg", "--epochs", "2", "--threads",
                 "1"});
}

// Databases the test started (as scripts/start-redis.sh users would): the peers find them through
// --store-peers, train, and leave none of the run's keys behind.
struct Databases {
  explicit Databases(int size, test::RedisServer::Options options = {}) {
    std::ofstream directory(dir.File("stores"));
    for (int r = 0; r < size; ++r) {
      servers.push_back(std::make_unique<test::RedisServer>(options));
      EXPECT_TRUE(servers.back()->ready()) << servers.back()->log();
      const std::string pw = dir.File("pw-" + std::to_string(r));
      std::ofstream(pw) << servers.back()->password() << "\n";
      directory << r << " " << servers.back()->url() << " " << pw << "\n";
    }
  }
  std::string file() const { return dir.File("stores"); }
  test::TempDir dir;
  std::vector<std::unique_ptr<test::RedisServer>> servers;
};

TEST(SpirtCliTest, PeersOnTheirOwnDatabasesAgreeAndLeaveNoKey) {
  for (const char* in_db : {"on", "off"}) {
    Databases dbs(2);
    test::TempDir dir;
    auto args = SmallRun(dir.File("metrics"), 2);
    args.insert(args.end(), {"--strategy", "spirt", "--store-peers", dbs.file(), "--in-db", in_db});
    auto r = RunProcess(args, std::chrono::minutes(3));
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_THAT(r.err, HasSubstr("SPIRT: deleted the run's")) << r.err;
    const auto last = LastRecords(dir.File("metrics"), 2);
    EXPECT_EQ(last[0]["param_hash"], last[1]["param_hash"]);
    EXPECT_EQ(last[0]["strategy"], "spirt");
    for (auto& server : dbs.servers) {
      auto c = server->Connect();
      ASSERT_TRUE(c.ok()) << c.status().ToString();
      EXPECT_EQ(c->Command({"DBSIZE"}).value().integer, 0) << "--in-db " << in_db;
    }
  }
}

TEST(SpirtCliTest, AWrongPasswordOrAMissingModuleFailsNamingTheDatabase) {
  {
    Databases dbs(2);
    std::ofstream(dbs.dir.File("pw-1")) << "wrong\n";
    test::TempDir dir;
    auto args = SmallRun(dir.File("metrics"), 2);
    args.insert(args.end(), {"--strategy", "spirt", "--store-peers", dbs.file()});
    auto r = RunProcess(args, std::chrono::minutes(2));
    EXPECT_NE(r.exit_code, 0) << r.err;
    EXPECT_THAT(r.err, HasSubstr("authentication refused")) << r.err;
    EXPECT_THAT(r.err, HasSubstr(dbs.servers[1]->url())) << r.err;
  }
  {
    Databases dbs(2, {.load_module = false});
    test::TempDir dir;
    auto args = SmallRun(dir.File("metrics"), 2);
    args.insert(args.end(), {"--strategy", "spirt", "--store-peers", dbs.file()});
    auto r = RunProcess(args, std::chrono::minutes(2));
    EXPECT_NE(r.exit_code, 0) << r.err;
    EXPECT_THAT(r.err, HasSubstr("module is not loaded")) << r.err;
    EXPECT_THAT(r.err, ::testing::ContainsRegex("unix://[^ ]*redis.sock")) << r.err;
  }
}

// The redis-servers launch started for the run: the directory it logged ("started 2
// redis-servers (module ...) in DIR"), and whether any process still runs out of it.
std::string RedisDir(const std::string& err) {
  std::smatch m;
  const std::regex re("redis-servers \\(module [^)]*\\) in (/tmp/p2ptrain-redis-[A-Za-z0-9]+)");
  return std::regex_search(err, m, re) ? m[1].str() : "";
}

bool AnyProcessUses(const std::string& dir) {
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    const std::string name = entry.path().filename();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::string cmdline = test::ReadFile(entry.path().string() + "/cmdline");
    std::replace(cmdline.begin(), cmdline.end(), '\0', ' ');
    if (cmdline.find("redis-server") != std::string::npos &&
        cmdline.find(dir) != std::string::npos) {
      return true;
    }
  }
  return false;
}

// A peer that fails, and a Ctrl-C: either way launch stops its databases and removes their
// directory (passwords included) before it exits.
TEST(SpirtCliTest, LaunchStopsItsDatabasesWhenAPeerFailsAndOnCtrlC) {
  test::TempDir dir;
  auto r = RunProcess(Launch({"--size", "2", "--store", "redis", "--metrics-dir", dir.File("m"),
                              "--progress", "off", "--", "--dataset", "mnist", "--data-dir",
                              dir.File("no-such-dir"), "--threads", "1"}),
                      std::chrono::minutes(2));
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_THAT(r.err, HasSubstr("no-such-dir")) << r.err;
  std::string redis_dir = RedisDir(r.err);
  ASSERT_FALSE(redis_dir.empty()) << r.err;
  EXPECT_FALSE(std::filesystem::exists(redis_dir)) << redis_dir;
  EXPECT_FALSE(AnyProcessUses(redis_dir)) << redis_dir;

  // Ctrl-C once the peers train (a long run: 50 epochs would take minutes).
  std::filesystem::create_directories(dir.File("m2"));  // for WaitForLines to watch
  test::Child launch(
      Launch({"--size", "2", "--store", "redis", "--metrics-dir", dir.File("m2"), "--progress",
              "off", "--", "--dataset", "synthetic", "--synthetic-train", "20000", "--model",
              "logreg", "--epochs", "50", "--threads", "1"}));
  ASSERT_TRUE(test::WaitForLines(dir.File("m2/rank-0.jsonl"), 1, std::chrono::minutes(2)));
  const std::string err_so_far = test::ReadFile(launch.err_path());
  redis_dir = RedisDir(err_so_far);
  ASSERT_FALSE(redis_dir.empty()) << err_so_far;
  EXPECT_TRUE(AnyProcessUses(redis_dir)) << "the databases run during the run";
  launch.Kill(SIGINT);
  auto stopped = launch.Wait(std::chrono::minutes(1));
  EXPECT_FALSE(stopped.timed_out);
  EXPECT_NE(stopped.exit_code, 0) << stopped.err;
  EXPECT_FALSE(std::filesystem::exists(redis_dir)) << redis_dir;
  EXPECT_FALSE(AnyProcessUses(redis_dir)) << redis_dir;
}

// The done-when run: 4 SPIRT peers, each with the redis-server launch started for it,
// train mlp on Fashion-MNIST; in-database and client-side give the same final parameters, and
// so does allgather-average over ZeroMQ without any store (the same mean, the same optimizer
// step, bitwise); accuracy therefore within 0.5 points.
TEST(SpirtCliTest, FourLaunchedPeersOnFashionMnistMatchAllgatherAverage) {
  const std::vector<std::string> train = {
      "--dataset", "fashion-mnist", "--model", "mlp", "--epochs", "1", "--threads", "1"};
  std::map<std::string, std::vector<nlohmann::json>> runs;
  for (const std::string mode : {"spirt-on", "spirt-off", "allgather"}) {
    test::TempDir dir;
    std::vector<std::string> args = {"--size",      "4",          "--metrics-dir",
                                     dir.File("m"), "--progress", "off"};
    if (mode != "allgather") args.insert(args.end(), {"--store", "redis"});
    args.push_back("--");
    args.insert(args.end(), train.begin(), train.end());
    if (mode == "spirt-off") args.insert(args.end(), {"--in-db", "off"});
    if (mode == "allgather") args.insert(args.end(), {"--strategy", "allgather-average"});
    auto r = RunProcess(Launch(args), std::chrono::minutes(12));
    ASSERT_EQ(r.exit_code, 0) << mode << ": " << r.err;
    if (mode != "allgather") {
      EXPECT_THAT(r.err, HasSubstr("started 4 redis-servers")) << r.err;
      EXPECT_THAT(r.err, HasSubstr("SPIRT: deleted the run's")) << r.err;
    }
    runs[mode] = LastRecords(dir.File("m"), 4);
    for (int rank = 1; rank < 4; ++rank) {
      EXPECT_EQ(runs[mode][rank]["param_hash"], runs[mode][0]["param_hash"]) << mode;
    }
  }
  EXPECT_EQ(runs["spirt-on"][0]["param_hash"], runs["spirt-off"][0]["param_hash"]);
  EXPECT_EQ(runs["spirt-on"][0]["param_hash"], runs["allgather"][0]["param_hash"]);
  const double spirt = runs["spirt-on"][0]["test_accuracy"].get<double>();
  const double allgather = runs["allgather"][0]["test_accuracy"].get<double>();
  EXPECT_LE(std::abs(spirt - allgather), 0.005) << spirt << " vs " << allgather;
  EXPECT_GT(spirt, 0.7);  // it learned
}

}  // namespace
}  // namespace p2p
