// BatchNorm running statistics in data-parallel training, end to end: real `p2ptrain launch` and
// `train` child processes on real Fashion-MNIST with cnn-bn (the smallest BatchNorm model).
#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "common/hash.h"
#include "peer/checkpoint.h"
#include "tests/support/subprocess.h"

namespace p2p {
namespace {

using test::P2ptrainBin;
using test::RunProcess;

std::vector<std::string> Args(std::vector<std::string> head, const std::vector<std::string>& tail) {
  head.insert(head.begin(), P2ptrainBin());
  head.insert(head.end(), tail.begin(), tail.end());
  return head;
}

const std::vector<std::string> kCnnBn = {
    "--dataset", "fashion-mnist", "--model", "cnn-bn", "--batch",
    "64",        "--threads",     "1",       "--lr",   "0.05"};

nlohmann::json LastRecord(const std::string& path) {
  const auto lines = test::ReadLines(path);
  EXPECT_FALSE(lines.empty()) << path;
  return lines.empty() ? nlohmann::json() : nlohmann::json::parse(lines.back());
}

// The hash the peers report covers the parameters, then the buffers.
std::string HashOf(const peer::Checkpoint& c) {
  const uint64_t h = Fnv1a64(std::as_bytes(std::span(c.model_buffers)),
                             Fnv1a64(std::as_bytes(std::span(c.params))));
  return fmt::format("{:016x}", h);
}

// Four peers train on their own quarters, so each one's running statistics come from other
// batches; after the epoch-end exchange all hold the same buffers (their sample-weighted mean),
// the hash that says so covers them, and each checkpoint carries them.
TEST(BatchNormPeersTest, FourPeersEndWithTheSameParametersAndBuffers) {
  test::TempDir dir;
  const auto args =
      Args({"launch", "--size", "4", "--progress", "off", "--metrics-dir", dir.File("metrics"),
            "--", "--epochs", "2", "--checkpoint-dir", dir.File("ckpt-{rank}")},
           kCnnBn);
  const auto r = RunProcess(args, std::chrono::minutes(10));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::vector<peer::Checkpoint> ckpts;
  for (int rank = 0; rank < 4; ++rank) {
    SCOPED_TRACE("rank " + std::to_string(rank));
    const auto record = LastRecord(dir.File("metrics/rank-" + std::to_string(rank) + ".jsonl"));
    auto c = peer::LoadCheckpoint(dir.File("ckpt-" + std::to_string(rank)));
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    EXPECT_EQ(c->epoch, 2);
    // cnn-bn: BN(16) and BN(32), a running mean and variance each.
    ASSERT_EQ(c->model_buffers.size(), 2u * (16 + 32));
    EXPECT_EQ(record["param_hash"], HashOf(*c));
    ckpts.push_back(std::move(*c));
  }
  for (int rank = 1; rank < 4; ++rank) {
    EXPECT_EQ(ckpts[rank].params, ckpts[0].params) << "rank " << rank;
    EXPECT_EQ(ckpts[rank].model_buffers, ckpts[0].model_buffers) << "rank " << rank;
  }
  // Trained statistics, not the initial mean 0 / variance 1.
  EXPECT_NE(ckpts[0].model_buffers[0], 0.0f);
  EXPECT_NE(ckpts[0].model_buffers[16], 1.0f);
  // Learned something: Fashion-MNIST chance is 10 %.
  const auto record = LastRecord(dir.File("metrics/rank-0.jsonl"));
  EXPECT_GT(record["test_accuracy"].get<double>(), 0.6) << record;
}

// An interrupted run resumed from its checkpoint ends bit-identical (parameters and buffers) to
// one that never stopped: the checkpoint restores the running statistics.
TEST(BatchNormPeersTest, ResumeRestoresTheBuffers) {
  test::TempDir dir;
  const auto whole = RunProcess(
      Args({"train", "--progress", "off", "--epochs", "2", "--metrics", dir.File("whole.jsonl")},
           kCnnBn),
      std::chrono::minutes(10));
  ASSERT_EQ(whole.exit_code, 0) << whole.err;
  const auto first = RunProcess(
      Args({"train", "--progress", "off", "--epochs", "1", "--checkpoint-dir", dir.File("ckpt")},
           kCnnBn),
      std::chrono::minutes(10));
  ASSERT_EQ(first.exit_code, 0) << first.err;
  const auto rest =
      RunProcess(Args({"train", "--progress", "off", "--epochs", "2", "--checkpoint-dir",
                       dir.File("ckpt"), "--resume", "--metrics", dir.File("resumed.jsonl")},
                      kCnnBn),
                 std::chrono::minutes(10));
  ASSERT_EQ(rest.exit_code, 0) << rest.err;
  const auto want = LastRecord(dir.File("whole.jsonl"));
  const auto got = LastRecord(dir.File("resumed.jsonl"));
  EXPECT_EQ(got["epoch"], 2);
  EXPECT_EQ(got["param_hash"], want["param_hash"]);
  EXPECT_EQ(got["test_accuracy"], want["test_accuracy"]);  // evaluation reads the buffers
}

}  // namespace
}  // namespace p2p
