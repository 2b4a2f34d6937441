#include "peer/checkpoint.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "tests/support/subprocess.h"

namespace p2p::peer {
namespace {

Checkpoint Sample() {
  Checkpoint c;
  c.epoch = 3;
  c.model = "mlp";
  c.config = "model=mlp seed=1";
  c.params = {1.5f, -2.0f, 3.25f};
  c.optimizer.step = 42;
  c.optimizer.lr = 0.01f;
  c.optimizer.buffers = {{0.1f, 0.2f, 0.3f}, {4.f, 5.f, 6.f}};
  c.plateau = {0.5, 2, true};
  c.early_stopping = {0.4, 1, true};
  c.sync_state = {{7.f, 8.f, 9.f}, {}};           // a residual, an unused velocity
  c.model_buffers = {0.25f, -1.0f, 2.5f, 0.75f};  // BatchNorm running mean, running variance
  return c;
}

TEST(CheckpointTest, RoundTripIsExact) {
  test::TempDir dir;
  ASSERT_TRUE(SaveCheckpoint(dir.path(), Sample()).ok());
  auto loaded = LoadCheckpoint(dir.path());
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  const Checkpoint want = Sample();
  EXPECT_EQ(loaded->epoch, want.epoch);
  EXPECT_EQ(loaded->config, want.config);
  EXPECT_EQ(loaded->params, want.params);
  EXPECT_EQ(loaded->optimizer.step, want.optimizer.step);
  EXPECT_EQ(loaded->optimizer.buffers, want.optimizer.buffers);
  EXPECT_EQ(loaded->plateau.bad_epochs, 2);
  EXPECT_EQ(loaded->early_stopping.counter, 1);
  EXPECT_EQ(loaded->sync_state, want.sync_state);
  EXPECT_EQ(loaded->model_buffers, want.model_buffers);
}

// A model without BatchNorm writes no buffer section; one with buffers cut short is corrupt.
TEST(CheckpointTest, ModelBuffersAreOptionalAndTruncationIsCorrupt) {
  test::TempDir dir;
  Checkpoint c = Sample();
  c.model_buffers.clear();
  ASSERT_TRUE(SaveCheckpoint(dir.path(), c).ok());
  auto loaded = LoadCheckpoint(dir.path());
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  EXPECT_TRUE(loaded->model_buffers.empty());
  EXPECT_EQ(loaded->sync_state, c.sync_state);
}

// `train` and uncompressed peers keep no sync state.
TEST(CheckpointTest, EmptySyncStateRoundTrips) {
  test::TempDir dir;
  Checkpoint c = Sample();
  c.sync_state.clear();
  ASSERT_TRUE(SaveCheckpoint(dir.path(), c).ok());
  auto loaded = LoadCheckpoint(dir.path());
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  EXPECT_TRUE(loaded->sync_state.empty());
  EXPECT_EQ(loaded->optimizer.buffers, c.optimizer.buffers);
}

TEST(CheckpointTest, MissingIsNotFound) {
  test::TempDir dir;
  EXPECT_EQ(LoadCheckpoint(dir.path()).status().code(), StatusCode::kNotFound);
}

TEST(CheckpointTest, FlippedByteIsDetected) {
  test::TempDir dir;
  ASSERT_TRUE(SaveCheckpoint(dir.path(), Sample()).ok());
  const std::string path = CheckpointPath(dir.path());
  std::string bytes = test::ReadFile(path);
  bytes[bytes.size() / 2] ^= 0x40;
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
  auto loaded = LoadCheckpoint(dir.path());
  ASSERT_FALSE(loaded.ok());
  EXPECT_EQ(loaded.status().code(), StatusCode::kDataLoss);
  EXPECT_NE(loaded.status().message().find(path), std::string::npos);
}

TEST(CheckpointTest, TruncatedFileIsDetected) {
  test::TempDir dir;
  ASSERT_TRUE(SaveCheckpoint(dir.path(), Sample()).ok());
  const std::string path = CheckpointPath(dir.path());
  const std::string bytes = test::ReadFile(path);
  for (size_t keep : {size_t{0}, size_t{5}, size_t{20}, bytes.size() - 1}) {
    std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes.substr(0, keep);
    EXPECT_EQ(LoadCheckpoint(dir.path()).status().code(), StatusCode::kDataLoss) << keep;
  }
}

TEST(CheckCheckpointDirTest, AnExistingCheckpointNeedsResumeOrOverwrite) {
  test::TempDir dir;
  EXPECT_TRUE(CheckCheckpointDir("", false, false).ok());
  EXPECT_EQ(CheckCheckpointDir("", false, true).code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(CheckCheckpointDir(dir.path(), false, false).ok());  // empty: nothing to lose
  ASSERT_TRUE(SaveCheckpoint(dir.path(), Sample()).ok());
  const Status refused = CheckCheckpointDir(dir.path(), false, false);
  EXPECT_EQ(refused.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(refused.message().find("after epoch 3"), std::string::npos) << refused.message();
  EXPECT_NE(refused.message().find("--resume"), std::string::npos) << refused.message();
  EXPECT_NE(refused.message().find("--overwrite"), std::string::npos) << refused.message();
  EXPECT_TRUE(CheckCheckpointDir(dir.path(), true, false).ok());
  EXPECT_TRUE(CheckCheckpointDir(dir.path(), false, true).ok());
  EXPECT_EQ(CheckCheckpointDir(dir.path(), true, true).code(), StatusCode::kInvalidArgument);
  // The probe file is gone again: only the checkpoint is there.
  size_t files = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(dir.path())) ++files;
  EXPECT_EQ(files, 1u);
}

TEST(CheckCheckpointDirTest, AMissingDirIsCreatedAnUnwritableOneIsAnIoError) {
  test::TempDir dir;
  EXPECT_TRUE(CheckCheckpointDir(dir.File("a/b"), false, false).ok());
  EXPECT_TRUE(std::filesystem::is_directory(dir.File("a/b")));
  std::ofstream(dir.File("file")) << "x";
  // Root can write neither below a regular file nor into /proc.
  for (const std::string& bad : {dir.File("file/ckpt"), std::string("/proc/self")}) {
    const Status s = CheckCheckpointDir(bad, false, false);
    EXPECT_EQ(s.code(), StatusCode::kIoError) << bad;
    EXPECT_NE(s.message().find(bad), std::string::npos) << s.message();
  }
}

}  // namespace
}  // namespace p2p::peer
