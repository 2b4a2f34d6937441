// Byzantine robustness end to end (docs/robustness.md): real `p2ptrain launch` runs of 5 peers
// over ZeroMQ on the real Fashion-MNIST, one of them attacking. `mean` must collapse under a x10
// sign flipper, the robust rules must stay near the clean run, and every peer must end with the
// same parameters. Plus the flag checks, and an attacker sending NaN stopping the run cleanly.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "tests/support/subprocess.h"

namespace p2p {
namespace {

using test::P2ptrainBin;
using test::RunProcess;
using ::testing::HasSubstr;

constexpr int kPeers = 5;

struct RunOutcome {
  test::ProcessResult process;
  double accuracy = -1;
  std::vector<std::string> hashes;  // every rank's final param_hash
};

// The setting: 3 epochs of mlp at batch 64 (about 10 s a run on 2 shared cores; the runs
// are bitwise deterministic, so the thresholds below cannot flake). docs/robustness.md has the
// whole table from bench/robustness.sh.
RunOutcome Launch(const std::string& rule, const std::vector<std::string>& attack = {}) {
  test::TempDir dir;
  std::vector<std::string> args = {P2ptrainBin(),          "launch",        "--size",
                                   std::to_string(kPeers), "--metrics-dir", dir.File("m"),
                                   "--progress",           "off",           "--"};
  for (const char* flag :
       {"--dataset", "fashion-mnist", "--model", "mlp", "--epochs", "3", "--batch", "64",
        "--threads", "1", "--insecure", "--no-early-stopping", "--aggregation"}) {
    args.emplace_back(flag);
  }
  args.push_back(rule);
  args.insert(args.end(), attack.begin(), attack.end());
  RunOutcome out;
  out.process = RunProcess(args, std::chrono::minutes(10));
  if (out.process.exit_code != 0) return out;
  for (int r = 0; r < kPeers; ++r) {
    const auto lines = test::ReadLines(dir.File("m/rank-" + std::to_string(r) + ".jsonl"));
    if (lines.empty()) return out;
    const auto last = nlohmann::json::parse(lines.back());
    out.hashes.push_back(last["param_hash"].get<std::string>());
    out.accuracy = last["test_accuracy"].get<double>();
  }
  return out;
}

const std::vector<std::string> kSignFlip = {"--attack", "signflip:scale=10", "--attack-ranks", "1"};

void ExpectAllHashesEqual(const RunOutcome& run, const std::string& what) {
  ASSERT_EQ(run.hashes.size(), size_t{kPeers}) << what;
  for (int r = 1; r < kPeers; ++r) EXPECT_EQ(run.hashes[r], run.hashes[0]) << what << " rank " << r;
}

TEST(RobustnessTest, RobustRulesResistASignFlipperThatBreaksTheMean) {
  const RunOutcome clean = Launch("mean");
  ASSERT_EQ(clean.process.exit_code, 0) << clean.process.err;
  ExpectAllHashesEqual(clean, "clean mean");
  EXPECT_GT(clean.accuracy, 0.70) << "the clean run must learn for the comparison to mean much";

  // The mean follows the attacker uphill until the parameters overflow: either the accuracy
  // collapses or the first non-finite gradient stops every peer with an error saying so (the
  // decoders refuse it), never a NaN model reported as trained.
  const RunOutcome attacked = Launch("mean", kSignFlip);
  EXPECT_THAT(attacked.process.err, HasSubstr("rank 1 is a Byzantine attacker"));
  if (attacked.process.exit_code == 0) {
    ExpectAllHashesEqual(attacked, "mean under attack");
    EXPECT_LE(attacked.accuracy, 0.50) << "mean under a x10 sign flipper should collapse";
  } else {
    EXPECT_EQ(attacked.process.exit_code, 1) << attacked.process.err;
    EXPECT_THAT(attacked.process.err, HasSubstr("holds a NaN, infinite or larger than 1e+38"))
        << attacked.process.err;
  }

  for (const std::string rule : {"median", "trimmed-mean:beta=0.2", "krum:f=1", "centered-clip"}) {
    const RunOutcome robust = Launch(rule, kSignFlip);
    ASSERT_EQ(robust.process.exit_code, 0) << rule << ": " << robust.process.err;
    ExpectAllHashesEqual(robust, rule);
    RecordProperty(rule, std::to_string(robust.accuracy));
    EXPECT_GE(robust.accuracy, clean.accuracy - 0.02)
        << rule << " under attack vs clean " << clean.accuracy;
  }
}

TEST(RobustnessTest, AnOmniscientAlieAttackerRunsAndEveryPeerEndsEqual) {
  // ALIE waits for the honest gradients of each round before it sends; the run must neither
  // deadlock nor let the peers diverge. auto picks allgather-average for it.
  const RunOutcome run = Launch("median", {"--attack", "alie", "--attack-ranks", "1"});
  ASSERT_EQ(run.process.exit_code, 0) << run.process.err;
  EXPECT_THAT(run.process.err, HasSubstr("--attack alie:z=0.253347")) << run.process.err;
  EXPECT_THAT(run.process.err, HasSubstr("gradients combined by allgather-average"));
  ExpectAllHashesEqual(run, "median under alie");
  EXPECT_GT(run.accuracy, 0.5) << "median under a one-in-five ALIE attacker still learns";

  const RunOutcome wrong = Launch(
      "median", {"--attack", "ipm", "--attack-ranks", "1", "--strategy", "reduce-scatter-average"});
  EXPECT_EQ(wrong.process.exit_code, 2) << wrong.process.err;
  EXPECT_THAT(wrong.process.err, HasSubstr("only --strategy allgather-average"));
}

TEST(RobustnessTest, ANanAttackerStopsTheRunWithAnErrorNamingIt) {
  // median runs on reduce-scatter: the attacker's raw slices carry the NaN to the honest peers,
  // whose decoders refuse it; never a NaN model.
  const RunOutcome run = Launch("median", {"--attack", "nan", "--attack-ranks", "1"});
  EXPECT_EQ(run.process.exit_code, 1) << run.process.err;
  EXPECT_THAT(run.process.err, HasSubstr("from rank 1")) << run.process.err;
  EXPECT_THAT(run.process.err, HasSubstr("NaN")) << run.process.err;
}

TEST(RobustnessTest, BadAggregationAndAttackFlagsExitWith2NamingTheProblem) {
  struct Case {
    std::vector<std::string> args;
    std::string expected;
  };
  const std::vector<Case> cases = {
      {{"--aggregation", "krum:f=2"},
       "krum:f=2 needs n >= 2f + 3 = 7 inputs with samples, but "
       "there are 5"},
      {{"--aggregation", "bulyan:f=1"}, "n >= 4f + 3 = 7"},
      {{"--aggregation", "trimmed-mean:beta=0.5"}, "beta=0.5 must be a number in [0, 0.4"},
      {{"--aggregation", "krum:q=1"}, "aggregation rule 'krum' has no parameter 'q'"},
      {{"--aggregation", "mode"}, "unknown aggregation rule 'mode'; valid: mean, median"},
      {{"--aggregation", "krum:f=1", "--strategy", "reduce-scatter-average"},
       "--aggregation krum:f=1 compares whole gradients"},
      {{"--attack", "signflip"}, "--attack and --attack-ranks go together"},
      {{"--attack", "flip", "--attack-ranks", "1"}, "unknown --attack 'flip'; valid: signflip"},
      {{"--attack", "zero", "--attack-ranks", "5"}, "'5' is not a rank in [0, 5)"},
      {{"--attack", "signflip:std=1", "--attack-ranks", "1"}, "one parameter, scale=NUMBER"},
  };
  for (const Case& c : cases) {
    std::vector<std::string> args = {P2ptrainBin(), "peer",      "--size",   "5",
                                     "--rank",      "0",         "--peers",  "a:1,b:1,c:1,d:1,e:1",
                                     "--insecure",  "--dataset", "synthetic"};
    args.insert(args.end(), c.args.begin(), c.args.end());
    const auto r = RunProcess(args, std::chrono::minutes(1));
    EXPECT_EQ(r.exit_code, 2) << c.args[1] << ": " << r.err;
    EXPECT_THAT(r.err, HasSubstr(c.expected)) << r.err;
  }
}

}  // namespace
}  // namespace p2p
