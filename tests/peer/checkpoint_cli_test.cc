// --checkpoint-dir safety with real `p2ptrain train` processes: an existing checkpoint is never
// replaced silently, and a directory that cannot take a checkpoint is refused before any training.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "peer/checkpoint.h"
#include "tests/support/subprocess.h"

namespace p2p {
namespace {

std::vector<std::string> Train(const std::string& ckpt, const std::string& metrics,
                               const std::string& epochs, std::vector<std::string> more = {}) {
  std::vector<std::string> argv = {
      test::P2ptrainBin(), "train",  "--dataset", "synthetic", "--synthetic-train", "1000",
      "--model",           "logreg", "--epochs",  epochs,      "--threads",         "1",
      "--progress",        "json",   "--metrics", metrics,     "--checkpoint-dir",  ckpt};
  argv.insert(argv.end(), more.begin(), more.end());
  return argv;
}

bool Trained(const test::ProcessResult& r) {
  return r.out.find("\"event\":\"progress\"") != std::string::npos;
}

TEST(CheckpointCliTest, AnExistingCheckpointNeedsResumeOrOverwrite) {
  test::TempDir dir;
  const std::string ckpt = dir.File("ckpt");
  auto first = test::RunProcess(Train(ckpt, dir.File("a.jsonl"), "1"));
  ASSERT_EQ(first.exit_code, 0) << first.err;
  const std::string before = test::ReadFile(peer::CheckpointPath(ckpt));
  ASSERT_FALSE(before.empty());

  // Without --resume or --overwrite: a usage error naming both, before any training, and the
  // checkpoint untouched.
  auto again = test::RunProcess(Train(ckpt, dir.File("b.jsonl"), "2"));
  EXPECT_EQ(again.exit_code, 2) << again.err;
  EXPECT_NE(again.err.find(ckpt), std::string::npos) << again.err;
  EXPECT_NE(again.err.find("after epoch 1"), std::string::npos) << again.err;
  EXPECT_NE(again.err.find("pass --resume"), std::string::npos) << again.err;
  EXPECT_NE(again.err.find("--overwrite"), std::string::npos) << again.err;
  EXPECT_FALSE(Trained(again)) << again.out;
  EXPECT_EQ(test::ReadFile(peer::CheckpointPath(ckpt)), before);

  // Both at once contradict each other.
  auto both = test::RunProcess(Train(ckpt, dir.File("c.jsonl"), "2", {"--resume", "--overwrite"}));
  EXPECT_EQ(both.exit_code, 2) << both.err;
  EXPECT_NE(both.err.find("pass one"), std::string::npos) << both.err;

  // --overwrite starts over at epoch 1 and replaces it; --resume continues from it.
  auto over = test::RunProcess(Train(ckpt, dir.File("d.jsonl"), "2", {"--overwrite"}));
  ASSERT_EQ(over.exit_code, 0) << over.err;
  const auto lines = test::ReadLines(dir.File("d.jsonl"));
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(nlohmann::json::parse(lines[0])["epoch"], 1);
  auto replaced = peer::LoadCheckpoint(ckpt);
  ASSERT_TRUE(replaced.ok()) << replaced.status().ToString();
  EXPECT_EQ(replaced->epoch, 2);
  auto resumed = test::RunProcess(Train(ckpt, dir.File("e.jsonl"), "3", {"--resume"}));
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  ASSERT_EQ(test::ReadLines(dir.File("e.jsonl")).size(), 1u);
  EXPECT_EQ(nlohmann::json::parse(test::ReadLines(dir.File("e.jsonl"))[0])["epoch"], 3);
}

// Directories nobody can write, root included (root ignores permission bits, so a chmod would
// test nothing here): a path below a regular file, and a directory of /proc.
TEST(CheckpointCliTest, AnUnusableCheckpointDirFailsBeforeTraining) {
  test::TempDir dir;
  std::ofstream(dir.File("plain-file")) << "not a directory\n";
  for (const std::string& ckpt : {dir.File("plain-file/ckpt"), std::string("/proc/self")}) {
    SCOPED_TRACE(ckpt);
    auto r = test::RunProcess(Train(ckpt, dir.File("m.jsonl"), "1"));
    EXPECT_EQ(r.exit_code, 1) << r.err;
    EXPECT_NE(r.err.find("--checkpoint-dir " + ckpt), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("choose a writable directory"), std::string::npos) << r.err;
    EXPECT_FALSE(Trained(r)) << r.out;  // refused before the first minibatch
  }
}

}  // namespace
}  // namespace p2p
