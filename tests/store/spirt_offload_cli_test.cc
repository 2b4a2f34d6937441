// `--strategy spirt --offload process`: the functions read the parameters from their peer's
// database and write their gradients into it (docs/spirt.md). Real `p2ptrain launch` / `peer`
// processes, real function processes, real redis-servers, Fashion-MNIST. Labels: store.
#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>

#include "tests/store/redis_server.h"
#include "tests/support/subprocess.h"

namespace p2p {
namespace {

using test::P2ptrainBin;
using test::RunProcess;
using ::testing::HasSubstr;

std::vector<nlohmann::json> Records(const std::string& metrics_dir, int rank) {
  std::vector<nlohmann::json> records;
  for (const auto& line :
       test::ReadLines(metrics_dir + "/rank-" + std::to_string(rank) + ".jsonl")) {
    records.push_back(nlohmann::json::parse(line));
  }
  return records;
}

// 2 peers on test-started databases, synthetic data: in-database and client-side mode with
// functions on the store path end with the parameters of allgather-average with the same
// functions (the same per-part gradients, summed in part order), and leave no key behind.
TEST(SpirtOffloadCliTest, FunctionsOnTheStoreGiveTheBitsOfTheSameOffloadWithoutIt) {
  const std::vector<std::string> run = {
      "--size",  "2",           "--run-id",  "spirt-fn",          "--progress", "off",
      "--",      "--dataset",   "synthetic", "--synthetic-train", "1000",       "--model",
      "mlp",     "--epochs",    "2",         "--threads",         "1",          "--offload",
      "process", "--functions", "2"};
  std::map<std::string, std::string> hashes;
  for (const std::string mode : {"on", "off", "allgather"}) {
    test::TempDir dir;
    std::vector<std::unique_ptr<test::RedisServer>> servers;
    std::vector<std::string> args = {P2ptrainBin(), "launch", "--metrics-dir", dir.File("m")};
    args.insert(args.end(), run.begin(), run.end());
    if (mode == "allgather") {
      args.insert(args.end(), {"--strategy", "allgather-average"});
    } else {
      std::ofstream directory(dir.File("stores"));
      for (int r = 0; r < 2; ++r) {
        servers.push_back(std::make_unique<test::RedisServer>());
        ASSERT_TRUE(servers.back()->ready()) << servers.back()->log();
        const std::string pw = dir.File("pw-" + std::to_string(r));
        std::ofstream(pw) << servers.back()->password() << "\n";
        directory << r << " " << servers.back()->url() << " " << pw << "\n";
      }
      directory.close();
      args.insert(args.end(),
                  {"--strategy", "spirt", "--store-peers", dir.File("stores"), "--in-db", mode});
    }
    auto r = RunProcess(args, std::chrono::minutes(5));
    ASSERT_EQ(r.exit_code, 0) << mode << ": " << r.err;
    if (mode != "allgather") {
      EXPECT_THAT(r.err, HasSubstr("write gradients to this peer's database")) << r.err;
      EXPECT_THAT(r.err, HasSubstr("SPIRT: deleted the run's")) << r.err;
      for (auto& server : servers) {
        auto c = server->Connect();
        ASSERT_TRUE(c.ok()) << c.status().ToString();
        EXPECT_EQ(c->Command({"DBSIZE"}).value().integer, 0) << "--in-db " << mode;
      }
    }
    const auto r0 = Records(dir.File("m"), 0), r1 = Records(dir.File("m"), 1);
    ASSERT_EQ(r0.size(), 2u) << mode;
    ASSERT_EQ(r1.size(), 2u) << mode;
    EXPECT_EQ(r0.back()["param_hash"], r1.back()["param_hash"]) << mode;
    EXPECT_GT(r0.back()["invocations"].get<int>(), 0) << mode << ": the functions did the work";
    hashes[mode] = r0.back()["param_hash"];
  }
  EXPECT_EQ(hashes["on"], hashes["off"]);
  EXPECT_EQ(hashes["on"], hashes["allgather"]);
}

TEST(SpirtOffloadCliTest, AmqpFunctionsAreRefusedOnTheStorePath) {
  test::TempDir dir;
  test::RedisServer server;
  ASSERT_TRUE(server.ready()) << server.log();
  std::ofstream(dir.File("pw")) << server.password() << "\n";
  std::ofstream(dir.File("stores")) << "0 " << server.url() << " " << dir.File("pw") << "\n";
  auto r = RunProcess({P2ptrainBin(),
                       "launch",
                       "--size",
                       "1",
                       "--metrics-dir",
                       dir.File("m"),
                       "--progress",
                       "off",
                       "--",
                       "--dataset",
                       "synthetic",
                       "--synthetic-train",
                       "200",
                       "--model",
                       "logreg",
                       "--epochs",
                       "1",
                       "--strategy",
                       "spirt",
                       "--store-peers",
                       dir.File("stores"),
                       "--offload",
                       "amqp",
                       "--fn-broker",
                       "amqp://guest:guest@127.0.0.1:1/"},
                      std::chrono::minutes(2));
  EXPECT_NE(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.err, HasSubstr("only --offload process supports")) << r.err;
}

// The done-when run: 4 SPIRT peers (launch --store redis) x 2 functions each, 3 epochs
// of mlp on Fashion-MNIST. Every peer ends with the same parameters, bitwise those of
// allgather-average with the same functions, and within 0.5 points of accuracy of plain
// allgather-average without functions or a store. Prints each run's epoch wall times.
TEST(SpirtOffloadCliTest, FourPeersWithTwoFunctionsEachOnFashionMnist) {
  const std::vector<std::string> train = {
      "--dataset", "fashion-mnist", "--model", "mlp", "--epochs", "3", "--threads", "1"};
  std::map<std::string, nlohmann::json> last;
  for (const std::string mode : {"spirt-fn", "allgather-fn", "allgather"}) {
    test::TempDir dir;
    std::vector<std::string> args = {P2ptrainBin(),   "launch",      "--size",     "4",
                                     "--metrics-dir", dir.File("m"), "--progress", "off"};
    if (mode == "spirt-fn") args.insert(args.end(), {"--store", "redis"});
    args.push_back("--");
    args.insert(args.end(), train.begin(), train.end());
    if (mode != "allgather") args.insert(args.end(), {"--offload", "process", "--functions", "2"});
    if (mode != "spirt-fn") args.insert(args.end(), {"--strategy", "allgather-average"});
    auto r = RunProcess(args, std::chrono::minutes(25));
    ASSERT_EQ(r.exit_code, 0) << mode << ": " << r.err;
    if (mode == "spirt-fn") {
      EXPECT_THAT(r.err, HasSubstr("started 4 redis-servers")) << r.err;
      EXPECT_THAT(r.err, HasSubstr("write gradients to this peer's database")) << r.err;
      EXPECT_THAT(r.err, HasSubstr("SPIRT: deleted the run's")) << r.err;
    }
    const auto records = Records(dir.File("m"), 0);
    ASSERT_EQ(records.size(), 3u) << mode;
    std::string walls;
    for (const auto& rec : records) walls += fmt::format(" {:.1f}", rec["epoch_s"].get<double>());
    std::cout << mode << " epoch wall seconds:" << walls << "\n";
    for (int rank = 1; rank < 4; ++rank) {
      const auto other = Records(dir.File("m"), rank);
      ASSERT_FALSE(other.empty()) << mode << " rank " << rank;
      EXPECT_EQ(other.back()["param_hash"], records.back()["param_hash"]) << mode << " " << rank;
    }
    last[mode] = records.back();
  }
  EXPECT_EQ(last["spirt-fn"]["param_hash"], last["allgather-fn"]["param_hash"]);
  const double spirt = last["spirt-fn"]["test_accuracy"].get<double>();
  const double plain = last["allgather"]["test_accuracy"].get<double>();
  std::cout << "test accuracy: spirt-fn " << spirt << ", allgather " << plain << "\n";
  EXPECT_LE(std::abs(spirt - plain), 0.005) << spirt << " vs " << plain;
  EXPECT_GT(spirt, 0.75);  // it learned
}

}  // namespace
}  // namespace p2p
