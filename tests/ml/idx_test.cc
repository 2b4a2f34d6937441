// IDX reader: the real Fashion-MNIST files, and corrupted copies of them written to a temp dir.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>
#include <zlib.h>

#include <array>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "ml/dataset.h"

namespace p2p::ml {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

const std::string kFashionDir = "/usr/share/datasets/fashion-mnist";
const std::string kTrainImages = kFashionDir + "/train-images-idx3-ubyte.gz";
const std::string kTrainLabels = kFashionDir + "/train-labels-idx1-ubyte.gz";
const std::string kTestImages = kFashionDir + "/t10k-images-idx3-ubyte.gz";
const std::string kTestLabels = kFashionDir + "/t10k-labels-idx1-ubyte.gz";

std::vector<uint8_t> ReadBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

void WriteBytes(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
}

// Decompressed contents of a .gz file, read with zlib directly (independent of the reader).
std::vector<uint8_t> Gunzip(const std::string& path) {
  gzFile f = gzopen(path.c_str(), "rb");
  std::vector<uint8_t> out;
  std::array<uint8_t, 1 << 16> buf;
  int n;
  while ((n = gzread(f, buf.data(), buf.size())) > 0)
    out.insert(out.end(), buf.data(), buf.data() + n);
  gzclose(f);
  return out;
}

void WriteGzip(const std::string& path, const std::vector<uint8_t>& bytes) {
  gzFile f = gzopen(path.c_str(), "wb");
  gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size()));
  gzclose(f);
}

void PutBigEndian32(std::vector<uint8_t>& bytes, size_t offset, uint32_t v) {
  for (int i = 0; i < 4; ++i) bytes[offset + i] = static_cast<uint8_t>(v >> (24 - 8 * i));
}

class IdxTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           fmt::format("p2p-idx-test-{}-{}", ::getpid(),
                       ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string Path(const std::string& name) const { return (dir_ / name).string(); }

  fs::path dir_;
};

void ExpectDataLoss(const Status& s, const std::string& file, const std::string& what) {
  EXPECT_EQ(s.code(), StatusCode::kDataLoss) << s.ToString();
  EXPECT_THAT(s.message(), HasSubstr(file));
  EXPECT_THAT(s.message(), HasSubstr(what));
}

TEST(IdxRealData, TrainImages) {
  Result<IdxImages> images = ReadIdxImages(kTrainImages);
  ASSERT_TRUE(images.ok()) << images.status().ToString();
  EXPECT_EQ(images->count, 60000u);
  EXPECT_EQ(images->rows, 28);
  EXPECT_EQ(images->cols, 28);
  ASSERT_EQ(images->pixels.size(), 60000u * 28 * 28);
  // Sample 0 is an ankle boot: not a blank image.
  size_t lit = 0;
  for (int i = 0; i < 784; ++i) lit += images->pixels[i] != 0;
  EXPECT_GT(lit, 100u);
}

TEST(IdxRealData, TestImages) {
  Result<IdxImages> images = ReadIdxImages(kTestImages);
  ASSERT_TRUE(images.ok()) << images.status().ToString();
  EXPECT_EQ(images->count, 10000u);
  EXPECT_EQ(images->rows, 28);
  EXPECT_EQ(images->cols, 28);
}

TEST(IdxRealData, LabelsAreBalancedOverTenClasses) {
  for (const auto& [path, per_class] : {std::pair{kTrainLabels, 6000}, {kTestLabels, 1000}}) {
    Result<std::vector<uint8_t>> labels = ReadIdxLabels(path);
    ASSERT_TRUE(labels.ok()) << labels.status().ToString();
    ASSERT_EQ(labels->size(), 10u * per_class);
    std::array<int, 10> counts{};
    for (uint8_t y : *labels) {
      ASSERT_LT(y, 10);
      ++counts[y];
    }
    for (int c = 0; c < 10; ++c) EXPECT_EQ(counts[c], per_class) << path << " class " << c;
  }
  // The first training labels of Fashion-MNIST: ankle boot, T-shirt, T-shirt, dress, T-shirt.
  Result<std::vector<uint8_t>> labels = ReadIdxLabels(kTrainLabels);
  ASSERT_TRUE(labels.ok());
  EXPECT_THAT(std::vector<uint8_t>(labels->begin(), labels->begin() + 5),
              ::testing::ElementsAre(9, 0, 0, 3, 0));
}

TEST_F(IdxTest, PlainFileReadsLikeGzip) {
  WriteBytes(Path("t10k-labels-idx1-ubyte"), Gunzip(kTestLabels));
  Result<std::vector<uint8_t>> plain = ReadIdxLabels(Path("t10k-labels-idx1-ubyte"));
  Result<std::vector<uint8_t>> gz = ReadIdxLabels(kTestLabels);
  ASSERT_TRUE(plain.ok()) << plain.status().ToString();
  ASSERT_TRUE(gz.ok());
  EXPECT_EQ(*plain, *gz);
}

TEST_F(IdxTest, BadMagic) {
  std::vector<uint8_t> bytes = Gunzip(kTestLabels);
  bytes[3] = 0x02;
  WriteGzip(Path("bad-magic.gz"), bytes);
  ExpectDataLoss(ReadIdxLabels(Path("bad-magic.gz")).status(), "bad-magic.gz", "bad magic");
  // A labels file is not an images file.
  ExpectDataLoss(ReadIdxImages(kTestLabels).status(), "t10k-labels-idx1-ubyte.gz", "bad magic");
}

TEST_F(IdxTest, TruncatedGzipStream) {
  std::vector<uint8_t> gz = ReadBytes(kTestImages);
  gz.resize(gz.size() / 2);
  WriteBytes(Path("t10k-images-idx3-ubyte.gz"), gz);
  ExpectDataLoss(ReadIdxImages(Path("t10k-images-idx3-ubyte.gz")).status(),
                 "t10k-images-idx3-ubyte.gz", "gzip");
}

TEST_F(IdxTest, MissingGzipTrailerAfterCompletePayload) {
  std::vector<uint8_t> gz = ReadBytes(kTestLabels);
  gz.resize(gz.size() - 4);  // drop ISIZE: the payload decompresses completely
  WriteBytes(Path("labels.gz"), gz);
  ExpectDataLoss(ReadIdxLabels(Path("labels.gz")).status(), "labels.gz", "gzip");
}

TEST_F(IdxTest, TruncatedPayload) {
  std::vector<uint8_t> bytes = Gunzip(kTestImages);
  bytes.resize(16 + 1234);
  WriteGzip(Path("train-images-idx3-ubyte.gz"), bytes);
  ExpectDataLoss(ReadIdxImages(Path("train-images-idx3-ubyte.gz")).status(),
                 "train-images-idx3-ubyte.gz",
                 "truncated: header declares 10000 images of 28x28 but only 1234 bytes of pixels");
}

TEST_F(IdxTest, TrailingData) {
  std::vector<uint8_t> bytes = Gunzip(kTestLabels);
  bytes.push_back(1);
  WriteGzip(Path("long.gz"), bytes);
  ExpectDataLoss(ReadIdxLabels(Path("long.gz")).status(), "long.gz", "trailing data");
}

TEST_F(IdxTest, WrongLabelCountInHeader) {
  std::vector<uint8_t> bytes = Gunzip(kTestLabels);
  PutBigEndian32(bytes, 4, 10001);
  WriteGzip(Path("labels.gz"), bytes);
  ExpectDataLoss(ReadIdxLabels(Path("labels.gz")).status(), "labels.gz",
                 "10001 labels but only 10000 bytes");
}

TEST_F(IdxTest, AbsurdDimsRejectedBeforeAllocating) {
  std::vector<uint8_t> bytes = Gunzip(kTestLabels);
  bytes.resize(16 + 100);
  bytes[3] = 0x03;  // now an images header
  for (uint32_t v : {0xFFFFFFFFu}) {
    PutBigEndian32(bytes, 4, v);
    WriteBytes(Path("huge"), bytes);
    ExpectDataLoss(ReadIdxImages(Path("huge")).status(), "huge", "implausible");
  }
  PutBigEndian32(bytes, 4, 1);
  PutBigEndian32(bytes, 8, 0);  // zero rows
  WriteBytes(Path("zero"), bytes);
  ExpectDataLoss(ReadIdxImages(Path("zero")).status(), "zero", "implausible");
  // 2^27 images of 64x64 (512 GiB) is within bounds but absent: truncation, not an allocation.
  PutBigEndian32(bytes, 4, 1u << 27);
  PutBigEndian32(bytes, 8, 64);
  PutBigEndian32(bytes, 12, 64);
  WriteBytes(Path("big"), bytes);
  ExpectDataLoss(ReadIdxImages(Path("big")).status(), "big", "only 100 bytes of pixels");
}

TEST_F(IdxTest, ShortAndEmptyFiles) {
  WriteBytes(Path("empty"), {});
  ExpectDataLoss(ReadIdxLabels(Path("empty")).status(), "empty", "truncated");
  WriteBytes(Path("short"), {0, 0, 8, 3, 0, 0});
  ExpectDataLoss(ReadIdxImages(Path("short")).status(), "short", "truncated header");
}

TEST_F(IdxTest, MissingFileIsNotFound) {
  Result<IdxImages> images = ReadIdxImages(Path("nope.gz"));
  EXPECT_EQ(images.status().code(), StatusCode::kNotFound);
  EXPECT_THAT(images.status().message(), HasSubstr("nope.gz"));
}

}  // namespace
}  // namespace p2p::ml
