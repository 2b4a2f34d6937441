// End-to-end tests of `p2ptrain train` as a real child process.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "tests/support/subprocess.h"

namespace p2p {
namespace {

using test::P2ptrainBin;
using test::RunProcess;
using ::testing::HasSubstr;
using ::testing::Not;

std::vector<std::string> SyntheticTrain(const std::string& metrics,
                                        const std::string& batch_size = "32") {
  return {P2ptrainBin(),     "train", "--dataset",  "synthetic", "--synthetic-train", "3000",
          "--synthetic-dim", "20",    "--model",    "mlp",       "--hidden",          "32",
          "--optimizer",     "adam",  "--lr",       "0.01",      "--batch_size",      batch_size,
          "--threads",       "1",     "--progress", "off",       "--metrics",         metrics};
}

// `args` without `flag` and its value, so a test can give its own.
std::vector<std::string> Without(std::vector<std::string> args, const std::string& flag) {
  for (auto it = args.begin(); it != args.end(); ++it) {
    if (*it == flag && it + 1 != args.end()) {
      args.erase(it, it + 2);
      break;
    }
  }
  return args;
}

nlohmann::json LastRecord(const std::string& metrics) {
  const auto lines = test::ReadLines(metrics);
  return lines.empty() ? nlohmann::json() : nlohmann::json::parse(lines.back());
}

TEST(TrainCliTest, FashionMnistMlpReaches84PercentInTwoEpochs) {
  test::TempDir dir;
  auto r = RunProcess({P2ptrainBin(), "train", "--model", "mlp", "--dataset", "fashion-mnist",
                       "--epochs", "2", "--progress", "lines", "--metrics", dir.File("m.jsonl")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("final test accuracy"), std::string::npos) << r.out;
  const auto lines = test::ReadLines(dir.File("m.jsonl"));
  ASSERT_EQ(lines.size(), 2u);
  const auto last = nlohmann::json::parse(lines.back());
  EXPECT_GE(last["test_accuracy"].get<double>(), 0.84) << lines.back();
  EXPECT_LT(last["loss"].get<double>(), nlohmann::json::parse(lines[0])["loss"].get<double>());
  for (const char* key : {"val_loss", "lr", "compute_s", "samples_per_s", "peak_rss_mb"}) {
    EXPECT_TRUE(last.contains(key)) << key;
  }
}

TEST(TrainCliTest, ResumeGivesTheSameParametersAsAnUninterruptedRun) {
  test::TempDir dir;
  auto straight = SyntheticTrain(dir.File("a.jsonl"));
  straight.insert(straight.end(), {"--epochs", "3", "--checkpoint-dir", dir.File("ckpt-a")});
  ASSERT_EQ(RunProcess(straight).exit_code, 0);

  auto first = SyntheticTrain(dir.File("b.jsonl"));
  first.insert(first.end(), {"--epochs", "2", "--checkpoint-dir", dir.File("ckpt-b")});
  ASSERT_EQ(RunProcess(first).exit_code, 0);
  auto resumed = SyntheticTrain(dir.File("b.jsonl"));
  resumed.insert(resumed.end(),
                 {"--epochs", "3", "--checkpoint-dir", dir.File("ckpt-b"), "--resume"});
  auto r = RunProcess(resumed);
  ASSERT_EQ(r.exit_code, 0) << r.err;

  const auto a = LastRecord(dir.File("a.jsonl"));
  const auto b = LastRecord(dir.File("b.jsonl"));
  EXPECT_EQ(b["epoch"], 3);
  EXPECT_EQ(a["param_hash"], b["param_hash"]);
  EXPECT_EQ(a["lr"], b["lr"]);
}

TEST(TrainCliTest, ResumeWithDifferentFlagsIsRefused) {
  test::TempDir dir;
  auto first = SyntheticTrain(dir.File("m.jsonl"));
  first.insert(first.end(), {"--epochs", "1", "--checkpoint-dir", dir.File("ckpt")});
  ASSERT_EQ(RunProcess(first).exit_code, 0);
  auto other = SyntheticTrain(dir.File("m.jsonl"), /*batch_size=*/"64");
  other.insert(other.end(), {"--epochs", "2", "--checkpoint-dir", dir.File("ckpt"), "--resume"});
  auto r = RunProcess(other);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("different configuration"), std::string::npos) << r.err;
}

TEST(TrainCliTest, UnknownNamesAreUsageErrorsListingTheValidNames) {
  struct Case {
    std::string flag, value, expected;
  };
  for (const Case& c :
       {Case{"--model", "resnet9000", "lenet5"}, Case{"--optimizer", "lion", "adagrad"},
        Case{"--dataset", "imagenet", "fashion-mnist"}, Case{"--loss", "hinge", "cross_entropy"}}) {
    auto r = RunProcess({P2ptrainBin(), "train", c.flag, c.value});
    EXPECT_EQ(r.exit_code, 2) << c.flag;
    EXPECT_NE((r.out + r.err).find(c.expected), std::string::npos) << c.flag << ": " << r.err;
  }
}

TEST(TrainCliTest, MissingDatasetNamesThePath) {
  test::TempDir dir;
  auto r = RunProcess({P2ptrainBin(), "train", "--dataset", "mnist", "--data-dir",
                       dir.File("nowhere"), "--epochs", "1"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find(dir.File("nowhere")), std::string::npos) << r.err;
}

TEST(TrainCliTest, HelpExplainsEveryFlagWithDefaults) {
  auto r = RunProcess({P2ptrainBin(), "train", "--help"});
  EXPECT_EQ(r.exit_code, 0);
  for (const char* flag :
       {"--batch_size", "--model", "--optimizer", "--loss", "--lr", "--epochs", "--seed",
        "--evaluation", "--metrics", "--checkpoint-dir", "--resume", "--threads"}) {
    EXPECT_NE(r.out.find(flag), std::string::npos) << flag;
  }
  EXPECT_NE(r.out.find("64"), std::string::npos) << "default batch size shown";
}

// Every numeric flag of every command says what it needs and what it got. CLI11's own checks
// printed "Value 0 not in range 0.000000 to 1797...(309 digits)" for --batch_size 0.
TEST(CliFlagsTest, BadNumbersAreUsageErrorsSayingWhatTheFlagNeeds) {
  struct Case {
    std::vector<std::string> args;
    std::string expected;
  };
  const std::vector<Case> cases = {
      {{"train", "--batch_size", "0"}, "--batch_size: must be a positive integer, got 0"},
      {{"train", "--batch", "-5"}, "--batch_size: must be a positive integer, got -5"},
      {{"train", "--batch_size", "99999999999"},
       "--batch_size: must be a positive integer no larger than 2147483647, got 99999999999"},
      {{"train", "--lr", "0"}, "--lr: must be a positive number, got 0"},
      {{"train", "--lr", "nan"}, "--lr: must be a positive number, got 'nan'"},
      {{"train", "--lr", "1e999"}, "--lr: must be a positive number, got '1e999'"},
      {{"train", "--lr", "2e9"}, "--lr: must be a positive number no larger than 1000000000"},
      {{"train", "--epochs", "0"}, "--epochs: must be a positive integer, got 0"},
      {{"train", "--epochs", "three"}, "--epochs: must be a positive integer, got 'three'"},
      {{"train", "--epochs", "1.5"}, "--epochs: must be a positive integer, got '1.5'"},
      {{"train", "--patience", "0"}, "--patience: must be a positive integer, got 0"},
      {{"train", "--seed", "-1"}, "--seed: must be an integer from 0 to 18446744073709551615"},
      {{"train", "--data-seed", "x"}, "--data-seed: must be an integer from 0 to"},
      {{"train", "--threads", "-1"}, "--threads: must be an integer from 0 to 1024, got -1"},
      {{"train", "--dropout", "2"}, "--dropout: must be a number from 0 to 0.95, got 2"},
      {{"train", "--momentum", "1.5"}, "--momentum: must be a number from 0 to 1, got 1.5"},
      {{"train", "--weight-decay", "-1"}, "--weight-decay: must be a non-negative number, got -1"},
      {{"train", "--hidden", "256,0"}, "--hidden: must be a positive integer, got 0"},
      {{"train", "--synthetic-train", "0"}, "--synthetic-train: must be an integer from 1 to"},
      {{"train", "--synthetic-dim", "0"}, "--synthetic-dim: must be an integer from 1 to 100000"},
      {{"train", "--size", "0"}, "--size: must be an integer from 1 to 4096, got 0"},
      {{"train", "--rank", "-1"}, "--rank: must be an integer from 0 to 4095, got -1"},
      {{"train", "--partition", "1,0"}, "--partition: must be a positive number, got 0"},
      {{"train", "--functions", "0"}, "--functions: must be an integer from 1 to 1024, got 0"},
      {{"train", "--fn-memory", "10"}, "--fn-memory: must be an integer from 64 to 1048576"},
      {{"train", "--fn-timeout", "0"}, "--fn-timeout: must be a positive number, got 0"},
      {{"train", "--fn-retries", "-1"}, "--fn-retries: must be an integer from 0 to 100, got -1"},
      {{"peer", "--peer-timeout", "0"}, "--peer-timeout: must be a positive number, got 0"},
      {{"peer", "--qsgd-bits", "0"}, "--qsgd-bits: must be an integer from 1 to 16, got 0"},
      {{"peer", "--qsgd-bucket", "-1"}, "--qsgd-bucket: must be a non-negative integer, got -1"},
      {{"peer", "--topk-ratio", "0"}, "--topk-ratio: must be a number above 0 and at most 1"},
      {{"peer", "--lr", "0"}, "--lr: must be a positive number, got 0"},
      {{"launch", "--size", "0"}, "--size: must be an integer from 1 to 64, got 0"},
      {{"launch", "--size", "2", "--grace", "-1"}, "--grace: must be a non-negative number"},
      {{"launch", "--size", "2", "--zmq-base-port", "0"}, "--zmq-base-port: must be an integer"},
      {{"function", "--fn-memory", "1"}, "--fn-memory: must be an integer from 64 to 1048576"},
      {{"function", "--max-tasks", "-1"}, "--max-tasks: must be an integer from 0 to"},
      {{"function", "--reconnect-timeout", "-1"}, "--reconnect-timeout: must be a non-negative"},
      {{"split", "--size", "0", "--out", "x"}, "--size: must be an integer from 1 to 4096"},
      {{"split", "--size", "2", "--out", "x", "--batches", "-1"},
       "--batches: must be a non-negative integer, got -1"},
      {{"broker", "--max-size", "0"}, "--max-size: must be a positive integer, got 0"},
      {{"keygen", "--out", "x", "--bits", "8"}, "--bits: must be an integer from"},
  };
  for (const Case& c : cases) {
    std::vector<std::string> argv = {P2ptrainBin()};
    argv.insert(argv.end(), c.args.begin(), c.args.end());
    auto r = RunProcess(argv);
    EXPECT_EQ(r.exit_code, 2) << c.args[0] << " " << c.args[1] << ": " << r.err;
    EXPECT_THAT(r.err, HasSubstr(c.expected)) << c.args[0] << " " << c.args[1];
    EXPECT_THAT(r.err, Not(HasSubstr("not in range"))) << r.err;
  }
}

// CLI11 reads integers with base 0; "010" must be ten epochs, not octal eight.
TEST(CliFlagsTest, LeadingZerosAreDecimal) {
  test::TempDir dir;
  auto args = Without(SyntheticTrain(dir.File("m.jsonl")), "--synthetic-train");
  args.insert(args.end(), {"--epochs", "010", "--synthetic-train", "0200", "--no-early-stopping"});
  auto r = RunProcess(args);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(test::ReadLines(dir.File("m.jsonl")).size(), 10u);
}

// --no-evaluation measures neither validation loss nor test accuracy: the metrics say null and
// the summary says "not measured", never 0.0 (which read like a model that learned nothing).
TEST(TrainCliTest, NoEvaluationReportsNullAndNoFinalAccuracy) {
  test::TempDir dir;
  auto args = SyntheticTrain(dir.File("m.jsonl"));
  args.insert(args.end(), {"--epochs", "1", "--no-evaluation"});
  auto r = RunProcess(args);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto last = LastRecord(dir.File("m.jsonl"));
  ASSERT_TRUE(last.contains("val_loss")) << last;
  EXPECT_TRUE(last["val_loss"].is_null()) << last;
  EXPECT_TRUE(last["test_accuracy"].is_null()) << last;
  EXPECT_TRUE(last["loss"].is_number()) << last;
  EXPECT_THAT(r.out, Not(HasSubstr("final test accuracy"))) << r.out;
  EXPECT_THAT(r.out, HasSubstr("finished epoch 1 (loss ")) << r.out;
  EXPECT_THAT(r.out, HasSubstr("test accuracy not measured (--no-evaluation)")) << r.out;

  // With evaluation (the default) the same run measures both.
  auto evaluated = SyntheticTrain(dir.File("e.jsonl"));
  evaluated.insert(evaluated.end(), {"--epochs", "1"});
  auto e = RunProcess(evaluated);
  ASSERT_EQ(e.exit_code, 0) << e.err;
  EXPECT_TRUE(LastRecord(dir.File("e.jsonl"))["test_accuracy"].is_number());
  EXPECT_THAT(e.out, HasSubstr("final test accuracy: ")) << e.out;
}

// --hidden 1000000,1000000 ended in "critical internal error: std::bad_alloc".
TEST(TrainCliTest, AModelOverTheParameterLimitIsRefusedNamingItsSize) {
  test::TempDir dir;
  auto args = Without(SyntheticTrain(dir.File("m.jsonl")), "--hidden");
  args.insert(args.end(), {"--hidden", "1000000,1000000"});
  auto r = RunProcess(args);
  EXPECT_EQ(r.exit_code, 2) << r.err;
  // 20*1e6+1e6 + 1e12+1e6 + 1e6*10+10 parameters (synthetic: 20 features, 10 classes).
  EXPECT_THAT(r.err, HasSubstr("model mlp (hidden 1000000,1000000) has 1000032000010 parameters"));
  EXPECT_THAT(r.err, HasSubstr("TiB for the parameters and their gradients alone"));
  EXPECT_THAT(r.err, HasSubstr("--hidden")) << r.err;
  EXPECT_THAT(r.err, Not(HasSubstr("bad_alloc"))) << r.err;
}

// Under the limit but over what the process may allocate (here an address-space limit of 2 GiB):
// refused before allocating, naming what it needs and what is available.
TEST(TrainCliTest, AModelLargerThanTheAvailableMemoryIsRefusedBeforeAllocating) {
  test::TempDir dir;
  auto args =
      Without(Without(Without(SyntheticTrain(dir.File("m.jsonl")), "--hidden"), "--synthetic-dim"),
              "--optimizer");
  // 1000 features x 250000 hidden: 2.5e8 parameters; with sgd's momentum 3 buffers, 2.8 GiB.
  args.insert(args.end(), {"--synthetic-dim", "1000", "--hidden", "250000", "--optimizer", "sgd"});
  args.insert(args.begin(), {"prlimit", "--as=2147483648", "--"});
  auto r = RunProcess(args);
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_THAT(r.err, HasSubstr("model mlp has 252750010 parameters and needs at least 2.8 GiB "
                               "(parameters, gradients and 1 sgd state buffer(s)"))
      << r.err;
  EXPECT_THAT(r.err, HasSubstr("of memory is available to this process")) << r.err;
  EXPECT_THAT(r.err, Not(HasSubstr("bad_alloc"))) << r.err;
}

// Real shard files from `p2ptrain split` (synthetic: 6000 samples, so 1800 per rank of 3).
TEST(TrainCliTest, AShardWrittenForAnotherRankOrRunIsRefused) {
  test::TempDir dir;
  auto split = RunProcess({P2ptrainBin(), "split", "--dataset", "synthetic", "--size", "3", "--out",
                           dir.File("shards")});
  ASSERT_EQ(split.exit_code, 0) << split.err;
  const std::string shard = dir.File("shards/rank-1.shard");
  auto train = [&](std::vector<std::string> extra) {
    std::vector<std::string> argv = {P2ptrainBin(), "train",  "--shard",    shard,
                                     "--model",     "logreg", "--epochs",   "1",
                                     "--threads",   "1",      "--progress", "off"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    return RunProcess(argv);
  };
  const std::string refused = "--shard " + shard + " does not belong to this run: ";

  auto r = train({"--dataset", "synthetic", "--size", "3", "--rank", "0"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_THAT(r.err, HasSubstr(refused + "it holds rank 1's samples of 3 but this process is "
                                         "rank 0"));
  EXPECT_THAT(r.err, HasSubstr("{rank} placeholder in the path: --shard " +
                               dir.File("shards/rank-{rank}.shard")));

  r = train({"--dataset", "synthetic", "--size", "4", "--rank", "1"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_THAT(r.err, HasSubstr(refused + "it was split for --size 3 (rank 1 of 3) but this run "
                                         "has --size 4"));

  r = train({"--size", "3", "--rank", "1"});  // --dataset left at its default, fashion-mnist
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_THAT(r.err, HasSubstr(refused + "it holds dataset 'synthetic' but this run's --dataset "
                                         "is 'fashion-mnist'; pass --dataset synthetic"));

  r = train({"--dataset", "synthetic", "--data-seed", "7"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_THAT(r.err, HasSubstr(refused + "it was partitioned with --data-seed 1234 but this run's "
                                         "--data-seed is 7"));

  // The right rank trains; so does one process alone on any rank's shard (no --size/--rank:
  // the single-peer comparison the README describes).
  r = train({"--dataset", "synthetic", "--size", "3", "--rank", "1"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.err, HasSubstr("data: 1620 train / 180 validation")) << r.err;
  r = train({"--dataset", "synthetic"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
}

}  // namespace
}  // namespace p2p
