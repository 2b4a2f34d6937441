// End-to-end tests of `p2ptrain train` as a real child process.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "tests/support/subprocess.h"

namespace p2p {
namespace {

using test::P2ptrainBin;
using test::RunProcess;

std::vector<std::string> SyntheticTrain(const std::string& metrics,
                                        const std::string& batch_size = "32") {
  return {P2ptrainBin(),     "train", "--dataset",  "synthetic", "--synthetic-train", "3000",
          "--synthetic-dim", "20",    "--model",    "mlp",       "--hidden",          "32",
          "--optimizer",     "adam",  "--lr",       "0.01",      "--batch_size",      batch_size,
          "--threads",       "1",     "--progress", "off",       "--metrics",         metrics};
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

}  // namespace
}  // namespace p2p
