// Shard files: bit-exact round trips, the documented layout, corruption detection, WriteSplit.
#include "ml/shard_file.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <bit>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <limits>

namespace p2p::ml {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

std::vector<uint8_t> ReadBytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

void WriteBytes(const fs::path& path, const std::vector<uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
}

// n samples of shape (2, 3, 1) with awkward floats (signed zero, denormal, inf, NaN payload).
Dataset Awkward(size_t n) {
  Dataset d;
  d.shape = Shape{2, 3, 1};
  d.num_classes = 7;
  d.x.resize(static_cast<Eigen::Index>(n), 6);
  const float specials[] = {-0.0f,
                            std::numeric_limits<float>::denorm_min(),
                            std::numeric_limits<float>::infinity(),
                            std::bit_cast<float>(0x7fc01234u),
                            1e-30f,
                            -3.25f};
  for (Eigen::Index i = 0; i < d.x.size(); ++i) {
    d.x.data()[i] = i < 6 ? specials[i] : static_cast<float>(i) * 0.37f - 5.0f;
  }
  for (size_t i = 0; i < n; ++i) d.y.push_back(static_cast<int32_t>(i % 7));
  return d;
}

bool BitEqual(const Dataset& a, const Dataset& b) {
  return a.shape == b.shape && a.num_classes == b.num_classes && a.y == b.y &&
         a.x.rows() == b.x.rows() && a.x.cols() == b.x.cols() &&
         std::memcmp(a.x.data(), b.x.data(), sizeof(float) * a.x.size()) == 0;
}

const ShardInfo kInfo{"fashion-mnist", 2, 5, 1, 3, 0x0123456789abcdefull};

class ShardFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           fmt::format("p2p-shard-test-{}-{}", ::getpid(),
                       ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
    path_ = (dir_ / "s.shard").string();
  }
  void TearDown() override { fs::remove_all(dir_); }

  // Writes Awkward(n) with kInfo to path_, then applies `corrupt` to the bytes on disk.
  Status WriteCorrupted(size_t n, const std::function<void(std::vector<uint8_t>&)>& corrupt) {
    EXPECT_TRUE(WriteShardFile(path_, Awkward(n), kInfo).ok());
    std::vector<uint8_t> bytes = ReadBytes(path_);
    corrupt(bytes);
    WriteBytes(path_, bytes);
    return ReadShardFile(path_).status();
  }
  void ExpectDataLoss(const Status& s, const std::string& what) {
    EXPECT_EQ(s.code(), StatusCode::kDataLoss) << s.ToString();
    EXPECT_THAT(s.message(), HasSubstr(path_));
    EXPECT_THAT(s.message(), HasSubstr(what));
  }

  fs::path dir_;
  std::string path_;
};

TEST_F(ShardFileTest, RoundTripIsBitExact) {
  for (size_t n : {0, 1, 50}) {
    const Dataset d = Awkward(n);
    ASSERT_TRUE(WriteShardFile(path_, d, kInfo).ok());
    Result<ShardFile> read = ReadShardFile(path_);
    ASSERT_TRUE(read.ok()) << read.status().ToString();
    EXPECT_TRUE(BitEqual(read->data, d)) << n;
    EXPECT_EQ(read->info, kInfo);
  }
  // Only the final file remains: the temporary was renamed.
  EXPECT_EQ(std::distance(fs::directory_iterator(dir_), fs::directory_iterator()), 1);
}

// Pins docs/shard-format.md: offsets, little-endian fields, total length.
TEST_F(ShardFileTest, LayoutMatchesTheSpec) {
  ASSERT_TRUE(WriteShardFile(path_, Awkward(4), kInfo).ok());
  const std::vector<uint8_t> b = ReadBytes(path_);
  auto u32 = [&b](size_t at) {
    return uint32_t{b[at]} | uint32_t{b[at + 1]} << 8 | uint32_t{b[at + 2]} << 16 |
           uint32_t{b[at + 3]} << 24;
  };
  const size_t name = 13;  // "fashion-mnist"
  ASSERT_EQ(b.size(), 16 + name + 48 + 4 * (6 * 4 + 4) + 4);
  EXPECT_EQ(std::string(b.begin(), b.begin() + 8), "P2PSHARD");
  EXPECT_EQ(u32(8), 1u);
  EXPECT_EQ(u32(12), name);
  EXPECT_EQ(std::string(b.begin() + 16, b.begin() + 16 + name), "fashion-mnist");
  const size_t f = 16 + name;
  EXPECT_EQ(u32(f), 2u);                // c
  EXPECT_EQ(u32(f + 4), 3u);            // h
  EXPECT_EQ(u32(f + 8), 1u);            // w
  EXPECT_EQ(u32(f + 12), 7u);           // num_classes
  EXPECT_EQ(u32(f + 16), 4u);           // count, low word
  EXPECT_EQ(u32(f + 20), 0u);           // count, high word
  EXPECT_EQ(u32(f + 24), 2u);           // rank
  EXPECT_EQ(u32(f + 28), 5u);           // size
  EXPECT_EQ(u32(f + 32), 1u);           // batch
  EXPECT_EQ(u32(f + 36), 3u);           // batches
  EXPECT_EQ(u32(f + 40), 0x89abcdefu);  // seed, low word
  EXPECT_EQ(u32(f + 44), 0x01234567u);
  EXPECT_EQ(u32(f + 48), 0x80000000u);      // first feature: -0.0f
  EXPECT_EQ(u32(f + 48 + 4 * 24 + 4), 1u);  // second label
}

TEST_F(ShardFileTest, FlippedPayloadByteFailsChecksum) {
  ExpectDataLoss(WriteCorrupted(50, [](auto& b) { b[b.size() / 2] ^= 0x01; }), "checksum mismatch");
  ExpectDataLoss(WriteCorrupted(50, [](auto& b) { b[b.size() - 5] ^= 0x80; }), "checksum mismatch");
  ExpectDataLoss(WriteCorrupted(50, [](auto& b) { b.back() ^= 0x10; }), "checksum mismatch");
  ExpectDataLoss(WriteCorrupted(50, [](auto& b) { b[17] ^= 0x20; }), "checksum mismatch");  // name
}

TEST_F(ShardFileTest, CorruptHeader) {
  ExpectDataLoss(WriteCorrupted(5, [](auto& b) { b[0] = 'X'; }), "bad magic");
  ExpectDataLoss(WriteCorrupted(5, [](auto& b) { b[8] = 2; }),
                 "unsupported shard format version 2");
  ExpectDataLoss(WriteCorrupted(5, [](auto& b) { b[12] = 200; }), "corrupt header");
  // count's high byte: 2^56 samples declared, rejected from the file length, nothing allocated.
  ExpectDataLoss(WriteCorrupted(5, [](auto& b) { b[16 + 13 + 23] = 1; }), "truncated or corrupt");
  ExpectDataLoss(WriteCorrupted(5, [](auto& b) { b[16 + 13 + 24] = 9; }), "rank 9 of size 5");
  ExpectDataLoss(WriteCorrupted(5, [](auto& b) { b[16 + 13 + 3] = 0x80; }), "implausible");
}

TEST_F(ShardFileTest, TruncationAndTrailingBytes) {
  ExpectDataLoss(WriteCorrupted(50, [](auto& b) { b.pop_back(); }), "truncated");
  ExpectDataLoss(WriteCorrupted(50, [](auto& b) { b.resize(b.size() / 2); }), "truncated");
  ExpectDataLoss(WriteCorrupted(50, [](auto& b) { b.resize(20); }), "truncated");
  ExpectDataLoss(WriteCorrupted(50, [](auto& b) { b.clear(); }), "truncated");
  ExpectDataLoss(WriteCorrupted(50, [](auto& b) { b.push_back(0); }), "truncated or corrupt");
}

TEST_F(ShardFileTest, MissingFileIsNotFound) {
  Result<ShardFile> r = ReadShardFile((dir_ / "none.shard").string());
  EXPECT_EQ(r.status().code(), StatusCode::kNotFound);
  EXPECT_THAT(r.status().message(), HasSubstr("none.shard"));
}

// What a run checks its flags against (rank, size, dataset, seed) without reading the samples.
TEST_F(ShardFileTest, ReadShardInfoReturnsTheHeaderWithTheSameHeaderChecks) {
  ASSERT_TRUE(WriteShardFile(path_, Awkward(50), kInfo).ok());
  Result<ShardInfo> info = ReadShardInfo(path_);
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  EXPECT_EQ(*info, kInfo);

  // The samples are not read: a flipped payload byte is the full read's business (CRC)...
  std::vector<uint8_t> bytes = ReadBytes(path_);
  bytes[bytes.size() / 2] ^= 0x01;
  WriteBytes(path_, bytes);
  EXPECT_TRUE(ReadShardInfo(path_).ok());
  EXPECT_EQ(ReadShardFile(path_).status().code(), StatusCode::kDataLoss);
  // ...but the header's own checks, the file length included, are the same.
  bytes.pop_back();
  WriteBytes(path_, bytes);
  ExpectDataLoss(ReadShardInfo(path_).status(), "truncated");
  bytes[0] = 'X';
  WriteBytes(path_, bytes);
  ExpectDataLoss(ReadShardInfo(path_).status(), "bad magic");
  EXPECT_EQ(ReadShardInfo((dir_ / "none.shard").string()).status().code(), StatusCode::kNotFound);
}

TEST_F(ShardFileTest, WriteRejectsInconsistentInputAndLeavesNothing) {
  ShardInfo bad = kInfo;
  bad.rank = 5;
  EXPECT_EQ(WriteShardFile(path_, Awkward(3), bad).code(), StatusCode::kInvalidArgument);
  bad = kInfo;
  bad.batch = 3;
  EXPECT_EQ(WriteShardFile(path_, Awkward(3), bad).code(), StatusCode::kInvalidArgument);
  Dataset labels = Awkward(3);
  labels.y[1] = 7;
  EXPECT_EQ(WriteShardFile(path_, labels, kInfo).code(), StatusCode::kInvalidArgument);
  Dataset shape = Awkward(3);
  shape.shape = Shape{1, 1, 1};
  EXPECT_EQ(WriteShardFile(path_, shape, kInfo).code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(fs::is_empty(dir_));
  EXPECT_EQ(WriteShardFile((dir_ / "no/such/dir/x.shard").string(), Awkward(3), kInfo).code(),
            StatusCode::kIoError);
}

TEST_F(ShardFileTest, RewriteReplacesAtomically) {
  ASSERT_TRUE(WriteShardFile(path_, Awkward(10), kInfo).ok());
  ASSERT_TRUE(WriteShardFile(path_, Awkward(3), kInfo).ok());
  Result<ShardFile> r = ReadShardFile(path_);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->data.size(), 3u);
  EXPECT_EQ(std::distance(fs::directory_iterator(dir_), fs::directory_iterator()), 1);
}

// ---- WriteSplit ----

Dataset Numbered(size_t n) {
  Dataset d;
  d.shape = Shape{3, 1, 1};
  d.num_classes = 10;
  d.x.resize(static_cast<Eigen::Index>(n), 3);
  for (size_t i = 0; i < n; ++i) {
    d.x.row(static_cast<Eigen::Index>(i)) << static_cast<float>(i), 0.5f, -1.0f * i;
    d.y.push_back(static_cast<int32_t>(i % 10));
  }
  return d;
}

TEST_F(ShardFileTest, WriteSplitMatchesShardIndicesAndBatchesConcatenate) {
  const Dataset train = Numbered(103);
  SplitOptions o{"synthetic", 3, 4, 77, {2, 1, 1}};
  ASSERT_TRUE(WriteSplit(train, o, (dir_ / "out").string()).ok());
  size_t total = 0;
  for (int r = 0; r < 3; ++r) {
    Result<ShardFile> shard = ReadShardFile(ShardPath((dir_ / "out").string(), r));
    ASSERT_TRUE(shard.ok()) << shard.status().ToString();
    Result<std::vector<size_t>> idx = ShardIndices(103, 3, r, 77, o.weights);
    ASSERT_TRUE(idx.ok());
    EXPECT_TRUE(BitEqual(shard->data, train.Subset(*idx))) << r;
    EXPECT_EQ(shard->info, (ShardInfo{"synthetic", r, 3, -1, 4, 77}));
    total += shard->data.size();
    std::vector<int32_t> labels;
    std::vector<float> first_feature;
    for (int b = 0; b < 4; ++b) {
      const std::string path = BatchShardPath((dir_ / "out").string(), r, b);
      EXPECT_THAT(path, HasSubstr(fmt::format("out/rank-{}/batch-{}.shard", r, b)));
      Result<ShardFile> batch = ReadShardFile(path);
      ASSERT_TRUE(batch.ok()) << batch.status().ToString();
      EXPECT_EQ(batch->info.batch, b);
      const size_t n = shard->data.size();
      EXPECT_EQ(batch->data.size(), n / 4 + (static_cast<size_t>(b) < n % 4));
      labels.insert(labels.end(), batch->data.y.begin(), batch->data.y.end());
      for (Eigen::Index i = 0; i < batch->data.x.rows(); ++i) {
        first_feature.push_back(batch->data.x(i, 0));
      }
    }
    EXPECT_EQ(labels, shard->data.y);
    for (size_t i = 0; i < first_feature.size(); ++i) {
      EXPECT_EQ(first_feature[i], shard->data.x(static_cast<Eigen::Index>(i), 0));
    }
  }
  EXPECT_EQ(total, 103u);
}

TEST_F(ShardFileTest, WriteSplitValidatesBeforeWriting) {
  const std::string out = (dir_ / "out").string();
  EXPECT_EQ(WriteSplit(Numbered(10), {"x", 4, 3, 1, {}}, out).code(),
            StatusCode::kInvalidArgument);  // a rank gets 2 samples < 3 batches
  EXPECT_EQ(WriteSplit(Numbered(10), {"x", 0, 0, 1, {}}, out).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(WriteSplit(Numbered(10), {"x", 2, 0, 1, {1, 1, 1}}, out).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(WriteSplit(Numbered(10), {"x", 2, -1, 1, {}}, out).code(),
            StatusCode::kInvalidArgument);
  EXPECT_FALSE(fs::exists(out));
  ASSERT_TRUE(WriteSplit(Numbered(10), {"x", 2, 0, 1, {}}, out).ok());
  EXPECT_TRUE(fs::exists(ShardPath(out, 1)));
  EXPECT_FALSE(fs::exists(fs::path(out) / "rank-0"));  // no batch folders without batches
}

}  // namespace
}  // namespace p2p::ml
