// `p2ptrain launch` as a real child process: usage errors, help, and (with `p2ptrain peer`) a
// small run of two local peers (a broken `peer` fails these tests; none of them skips).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "tests/support/subprocess.h"

namespace p2p {
namespace {

using test::P2ptrainBin;
using test::RunProcess;
using ::testing::HasSubstr;
using ::testing::Not;

std::vector<std::string> Launch(std::vector<std::string> args) {
  args.insert(args.begin(), {P2ptrainBin(), "launch"});
  return args;
}

TEST(LaunchCliTest, UsageErrorsExitWith2AndSayWhatIsWrong) {
  struct Case {
    std::vector<std::string> args;
    std::string expected;
  };
  const std::vector<Case> cases = {
      {{"--", "--epochs", "1"}, "--size is required"},
      {{"--size", "0"}, "--size"},
      {{"--size", "65"}, "--size"},
      {{"--size", "2", "--transport", "mpi"}, "--transport"},
      {{"--size", "2", "--broker", "amqp://h/"}, "--broker is for --transport amqp"},
      {{"--size", "2", "--transport", "amqp", "--zmq-base-port", "7000"},
       "--zmq-base-port is for --transport zmq"},
      {{"--size", "2", "--run-id", "a/b"}, "--run-id"},
      {{"--size", "2", "--epochs", "3"}, "peer flags go after `--`"},
      {{"--size", "2", "--", "--epochs", "1", "--rank", "1"}, "--rank after `--` is set by launch"},
      {{"--size", "2", "--", "--size", "4"}, "pass --size to launch"},
      {{"--size", "2", "--", "--metrics=m.jsonl"}, "--metrics-dir"},
      {{"--size", "2", "--", "--peers", "a:1,b:2"}, "--peers after `--`"},
      {{"--size", "2", "--", "--run-id", "x"}, "pass --run-id to launch"},
  };
  for (const Case& c : cases) {
    test::TempDir dir;
    auto args = Launch(c.args);
    // Never leave a runs/ directory behind, whatever happens.
    args.insert(args.begin() + 2, {"--metrics-dir", dir.File("m")});
    auto r = RunProcess(args);
    EXPECT_EQ(r.exit_code, 2) << c.args[0] << " ... " << r.err;
    EXPECT_THAT(r.err, HasSubstr(c.expected)) << r.err;
  }
}

TEST(LaunchCliTest, HelpExplainsTheFlagsWithAnExample) {
  auto r = RunProcess(Launch({"--help"}));
  EXPECT_EQ(r.exit_code, 0) << r.err;
  for (const char* text : {"Example", "p2ptrain launch --size 4 --", "--transport", "--metrics-dir",
                           "--zmq-base-port", "{rank}", "ipc://"}) {
    EXPECT_THAT(r.out, HasSubstr(text)) << r.out;
  }
}

// The runs below need `p2ptrain peer`; a broken one must fail them, never turn them into skips.
TEST(LaunchCliTest, ThePeerCommandItLaunchesExists) {
  auto r = RunProcess({P2ptrainBin(), "peer", "--help"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("--transport")) << r.out;
}

std::vector<std::string> SmallRun(const std::string& metrics_dir) {
  return Launch({"--size", "2", "--run-id", "launch-test", "--metrics-dir", metrics_dir,
                 "--progress", "lines", "--", "--dataset", "synthetic", "--synthetic-train", "2000",
                 "--model", "logreg", "--epochs", "1", "--threads", "1"});
}

TEST(LaunchCliTest, TwoLocalPeersTrainToTheSameParameters) {
  test::TempDir dir;
  auto args = SmallRun(dir.File("metrics"));
  args.insert(args.end(), {"--checkpoint-dir", dir.File("ckpt-{rank}")});
  auto r = RunProcess(args, std::chrono::minutes(3));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("launch: 2 ranks finished in")) << r.out;
  EXPECT_THAT(r.out, HasSubstr("[rank 0] final test accuracy")) << r.out;
  EXPECT_THAT(r.out, HasSubstr("[rank 1] final test accuracy")) << r.out;
  EXPECT_THAT(r.out + r.err, Not(HasSubstr("\"event\""))) << "progress events leaked";
  EXPECT_THAT(r.err, HasSubstr("[rank 0] ")) << r.err;
  // Secure by default: launch made the keys, the peers authenticated each other.
  EXPECT_THAT(r.err, HasSubstr("identities for this run")) << r.err;
  EXPECT_THAT(r.err, HasSubstr("authenticated: all 1 other peer(s) proved")) << r.err;
  std::vector<nlohmann::json> last;
  for (int rank = 0; rank < 2; ++rank) {
    const auto lines = test::ReadLines(dir.File("metrics/rank-" + std::to_string(rank) + ".jsonl"));
    ASSERT_EQ(lines.size(), 1u) << "rank " << rank;
    last.push_back(nlohmann::json::parse(lines.back()));
  }
  EXPECT_EQ(last[0]["param_hash"], last[1]["param_hash"]);
  // "{rank}" in a peer flag became each peer's rank.
  EXPECT_TRUE(std::filesystem::is_directory(dir.File("ckpt-0")));
  EXPECT_TRUE(std::filesystem::is_directory(dir.File("ckpt-1")));
}

TEST(LaunchCliTest, APeerUsageErrorIsReportedWithTheRankAndExits2) {
  test::TempDir dir;
  auto args = SmallRun(dir.File("metrics"));
  args.insert(args.end(), {"--optimizer", "nope"});
  auto r = RunProcess(args, std::chrono::minutes(1));
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_THAT(r.err, ::testing::ContainsRegex("rank [01] of 2 exited with code 2")) << r.err;
  EXPECT_THAT(r.err, HasSubstr("nope")) << r.err;
}

TEST(LaunchCliTest, APeerRuntimeFailureStopsTheRunAndExits1) {
  test::TempDir dir;
  auto args =
      Launch({"--size", "2", "--metrics-dir", dir.File("metrics"), "--progress", "off", "--",
              "--dataset", "mnist", "--data-dir", dir.File("no-such-dir"), "--threads", "1"});
  auto r = RunProcess(args, std::chrono::minutes(1));
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_THAT(r.err, ::testing::ContainsRegex("rank [01] of 2 exited with code 1")) << r.err;
  EXPECT_THAT(r.err, HasSubstr("no-such-dir")) << r.err;
}

std::string SplitShards(const test::TempDir& dir, const std::string& dataset, int size) {
  const std::string out = dir.File(dataset + "-" + std::to_string(size));
  auto r = RunProcess(
      {P2ptrainBin(), "split", "--dataset", dataset, "--size", std::to_string(size), "--out", out});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return out;
}

// The issue's case: Fashion-MNIST split in 3, and `--shard shards/rank-1.shard` for every peer.
// It trained all three on the same 18,000 samples and reported success.
TEST(LaunchCliTest, AShardWithoutTheRankPlaceholderIsRefusedBeforeAnyPeerStarts) {
  test::TempDir dir;
  const std::string shards = SplitShards(dir, "fashion-mnist", 3);
  auto r = RunProcess(Launch({"--size", "3", "--metrics-dir", dir.File("m"), "--", "--shard",
                              shards + "/rank-1.shard", "--epochs", "1"}),
                      std::chrono::minutes(1));
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_THAT(r.err, HasSubstr("--shard " + shards +
                               "/rank-1.shard after `--` has no {rank} placeholder, so all 3 "
                               "peers would train on the same samples (it holds rank 1's samples "
                               "of 3); give each rank its own shard: --shard " +
                               shards + "/rank-{rank}.shard"));
  EXPECT_THAT(r.err, Not(HasSubstr("launching"))) << "no peer may start";

  // With the placeholder, shards of a 3-way split do not fit a run of 2.
  r = RunProcess(Launch({"--size", "2", "--metrics-dir", dir.File("m"), "--", "--shard",
                         shards + "/rank-{rank}.shard", "--epochs", "1"}),
                 std::chrono::minutes(1));
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_THAT(r.err,
              HasSubstr("--shard " + shards +
                        "/rank-0.shard does not belong to this run: "
                        "it was split for --size 3 (rank 0 of 3) but this run has --size 2"));
}

// Each peer on its own shard file: they must agree on the configuration (the fingerprint once
// held each rank's own path, so no two ranks with their own shards could ever start together).
TEST(LaunchCliTest, PeersTrainTogetherEachOnItsOwnShard) {
  test::TempDir dir;
  const std::string shards = SplitShards(dir, "synthetic", 2);
  auto r =
      RunProcess(Launch({"--size", "2", "--metrics-dir", dir.File("metrics"), "--progress", "off",
                         "--", "--dataset", "synthetic", "--shard", shards + "/rank-{rank}.shard",
                         "--model", "logreg", "--epochs", "1", "--threads", "1"}),
                 std::chrono::minutes(3));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::vector<nlohmann::json> last;
  for (int rank = 0; rank < 2; ++rank) {
    const auto lines = test::ReadLines(dir.File("metrics/rank-" + std::to_string(rank) + ".jsonl"));
    ASSERT_EQ(lines.size(), 1u) << "rank " << rank;
    last.push_back(nlohmann::json::parse(lines.back()));
    // 6000 synthetic samples, 90% to train, halved; each shard keeps 90% for training.
    EXPECT_EQ(last.back()["samples"], 2430) << "rank " << rank;
  }
  EXPECT_EQ(last[0]["param_hash"], last[1]["param_hash"]);
}

// Peers with --no-evaluation: null in every rank's metrics, and a summary that says so.
TEST(LaunchCliTest, PeersWithoutEvaluationReportNullNotZero) {
  test::TempDir dir;
  auto args = SmallRun(dir.File("metrics"));
  args.push_back("--no-evaluation");
  auto r = RunProcess(args, std::chrono::minutes(3));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, Not(HasSubstr("final test accuracy"))) << r.out;
  EXPECT_THAT(r.out, ::testing::ContainsRegex(
                         "\\[rank 1\\] finished epoch 1 \\(loss [0-9.]+, parameters [0-9a-f]+, "
                         "all 2 peers agree\\); test accuracy not measured \\(--no-evaluation\\)"))
      << r.out;
  for (int rank = 0; rank < 2; ++rank) {
    const auto lines = test::ReadLines(dir.File("metrics/rank-" + std::to_string(rank) + ".jsonl"));
    ASSERT_EQ(lines.size(), 1u) << "rank " << rank;
    const auto record = nlohmann::json::parse(lines.back());
    EXPECT_TRUE(record["val_loss"].is_null()) << record;
    EXPECT_TRUE(record["test_accuracy"].is_null()) << record;
  }
}

}  // namespace
}  // namespace p2p
