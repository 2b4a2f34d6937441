// LoadDataset on the real Fashion-MNIST, on broken copies of it, on a fake CIFAR-10 directory,
// and the synthetic dataset.
#include "ml/dataset.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "ml/dataset_internal.h"

namespace p2p::ml {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

const fs::path kFashionDir = "/usr/share/datasets/fashion-mnist";

// A fresh directory per test, removed afterwards.
class TempDirTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           fmt::format("p2p-dataset-test-{}-{}", ::getpid(),
                       ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  // Symlinks the four real Fashion-MNIST files into dir_, except `skip`.
  void LinkFashion(const std::string& skip = "") {
    for (const char* name : {"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                             "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"}) {
      if (name != skip) fs::create_symlink(kFashionDir / name, dir_ / name);
    }
  }
  fs::path dir_;
};

void WriteFile(const fs::path& path, const std::vector<uint8_t>& bytes, bool gzip) {
  if (gzip) {
    gzFile f = gzopen(path.c_str(), "wb");
    gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size()));
    gzclose(f);
    return;
  }
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
}

// An IDX labels file holding `labels`.
std::vector<uint8_t> IdxLabels(const std::vector<uint8_t>& labels) {
  const auto n = static_cast<uint32_t>(labels.size());
  std::vector<uint8_t> bytes = {0,
                                0,
                                8,
                                1,
                                static_cast<uint8_t>(n >> 24),
                                static_cast<uint8_t>(n >> 16),
                                static_cast<uint8_t>(n >> 8),
                                static_cast<uint8_t>(n)};
  bytes.resize(8 + labels.size());  // resize + copy: insert() trips a GCC 12 -Warray-bounds bug
  std::copy(labels.begin(), labels.end(), bytes.begin() + 8);
  return bytes;
}

std::vector<uint8_t> RealTrainLabels() {
  Result<std::vector<uint8_t>> labels = ReadIdxLabels(kFashionDir / "train-labels-idx1-ubyte.gz");
  EXPECT_TRUE(labels.ok());
  return labels.ok() ? *labels : std::vector<uint8_t>{};
}

// ---- real Fashion-MNIST, loaded once ----

class FashionMnist : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    Result<Splits> loaded = LoadDataset(DataOptions{});
    ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
    splits_ = new Splits(std::move(loaded).value());
  }
  static void TearDownTestSuite() { delete splits_; }
  static Splits* splits_;
};
Splits* FashionMnist::splits_ = nullptr;

TEST_F(FashionMnist, SizesAndShapes) {
  ASSERT_NE(splits_, nullptr);
  EXPECT_EQ(splits_->train.size(), 54000u);
  EXPECT_EQ(splits_->validation.size(), 6000u);
  EXPECT_EQ(splits_->test.size(), 10000u);
  for (const Dataset* d : {&splits_->train, &splits_->validation, &splits_->test}) {
    EXPECT_EQ(d->shape, (Shape{1, 28, 28}));
    EXPECT_EQ(d->num_classes, 10);
    // Byte-backed: the pixels as stored, 4x smaller than float features.
    EXPECT_TRUE(d->byte_backed());
    EXPECT_EQ(d->x.size(), 0);
    EXPECT_EQ(d->pixels.size(), d->size() * 784);
    for (int32_t y : d->y) ASSERT_TRUE(y >= 0 && y < 10);
  }
}

TEST_F(FashionMnist, NormalisedToZeroMeanUnitStd) {
  ASSERT_NE(splits_, nullptr);
  const Matrix x = splits_->train.Features();
  const double mean = x.cast<double>().mean();
  const double var = (x.cast<double>().array() - mean).square().mean();
  EXPECT_NEAR(mean, 0.0, 0.01);
  EXPECT_NEAR(std::sqrt(var), 1.0, 0.01);
  // Pixel 0 is (0 / 255 - 0.2860) / 0.3530 where the image is black.
  EXPECT_NEAR(x.minCoeff(), -0.2860 / 0.3530, 1e-5);
  EXPECT_NEAR(x.maxCoeff(), (1 - 0.2860) / 0.3530, 1e-5);
}

TEST_F(FashionMnist, TestSetKeepsFileOrderAndBalance) {
  ASSERT_NE(splits_, nullptr);
  std::array<int, 10> counts{};
  for (int32_t y : splits_->test.y) ++counts[y];
  for (int c = 0; c < 10; ++c) EXPECT_EQ(counts[c], 1000);
  EXPECT_EQ(splits_->test.y[0], 9);  // ankle boot
}

TEST_F(FashionMnist, TrainPlusValidationIsTheTrainingFile) {
  ASSERT_NE(splits_, nullptr);
  std::array<int, 10> counts{};
  for (const Dataset* d : {&splits_->train, &splits_->validation}) {
    for (int32_t y : d->y) ++counts[y];
  }
  for (int c = 0; c < 10; ++c) EXPECT_EQ(counts[c], 6000);
}

// The features as every earlier build made them: the whole set normalised up front as float with
// this expression (compiled, like the library, with -ffp-contract=off).
Matrix OldNormalisedRows(const IdxImages& raw, std::span<const size_t> rows, float mean,
                         float std) {
  const float scale = 1.0f / (255.0f * std), offset = -mean / std;
  Matrix x(static_cast<Eigen::Index>(rows.size()), 784);
  for (size_t i = 0; i < rows.size(); ++i) {
    for (int j = 0; j < 784; ++j) {
      x(static_cast<Eigen::Index>(i), j) =
          static_cast<float>(raw.pixels[rows[i] * 784 + j]) * scale + offset;
    }
  }
  return x;
}

bool SameBits(const Matrix& a, const Matrix& b) {
  return a.rows() == b.rows() && a.cols() == b.cols() &&
         std::memcmp(a.data(), b.data(), sizeof(float) * a.size()) == 0;
}

TEST_F(FashionMnist, ByteBackedBatchesHaveTheOldFloatBits) {
  ASSERT_NE(splits_, nullptr);
  Result<IdxImages> raw = ReadIdxImages(kFashionDir / "train-images-idx3-ubyte.gz");
  ASSERT_TRUE(raw.ok()) << raw.status().ToString();
  const internal::SplitIndices split = internal::TrainValidationSplit(60000, DataOptions{}.seed);
  const Dataset& train = splits_->train;
  // Every row, in evaluation-sized chunks (RowRange) ...
  Matrix got;
  for (size_t start = 0; start < train.size(); start += 1000) {
    const size_t n = std::min<size_t>(1000, train.size() - start);
    train.RowRange(start, n, got);
    ASSERT_TRUE(SameBits(
        got, OldNormalisedRows(*raw, std::span(split.train).subspan(start, n), 0.2860f, 0.3530f)))
        << "rows from " << start;
  }
  // ... and a shuffled minibatch (GatherRows), as the trainer gathers them.
  const std::vector<size_t> order = SeededPermutation(train.size(), 7);
  const std::span<const size_t> batch = std::span(order).first(64);
  train.GatherRows(batch, got);
  std::vector<size_t> file_rows;
  for (size_t i : batch) file_rows.push_back(split.train[i]);
  EXPECT_TRUE(SameBits(got, OldNormalisedRows(*raw, file_rows, 0.2860f, 0.3530f)));
  EXPECT_EQ(train.y[batch[0]], RealTrainLabels()[file_rows[0]]);
}

bool SameSamples(const Dataset& a, const Dataset& b) {
  return a.y == b.y && a.shape == b.shape && a.num_classes == b.num_classes &&
         SameBits(a.Features(), b.Features());
}

// A peer's selection holds exactly the rows (and order) that cutting the whole load gave.
TEST_F(FashionMnist, PeerSelectionEqualsTheCutOfTheWholeSet) {
  ASSERT_NE(splits_, nullptr);
  size_t train_total = 0, val_total = 0, test_total = 0;
  for (int rank = 0; rank < 4; ++rank) {
    DataSelection sel;
    sel.size = 4;
    sel.rank = rank;
    sel.evaluation_slice = true;
    Result<Splits> part = LoadDataset(DataOptions{}, sel);
    ASSERT_TRUE(part.ok()) << part.status().ToString();
    Result<std::vector<size_t>> shard = ShardIndices(54000, 4, rank, DataOptions{}.seed);
    ASSERT_TRUE(shard.ok());
    EXPECT_TRUE(SameSamples(part->train, splits_->train.Subset(*shard))) << rank;
    auto slice = [rank](size_t n) {
      std::vector<size_t> rows;
      for (size_t i = n * rank / 4; i < n * (rank + 1) / 4; ++i) rows.push_back(i);
      return rows;
    };
    EXPECT_TRUE(SameSamples(part->validation, splits_->validation.Subset(slice(6000)))) << rank;
    EXPECT_TRUE(SameSamples(part->test, splits_->test.Subset(slice(10000)))) << rank;
    EXPECT_TRUE(part->train.byte_backed());
    EXPECT_EQ(part->train.pixels.size(), part->train.size() * 784);
    train_total += part->train.size();
    val_total += part->validation.size();
    test_total += part->test.size();
  }
  EXPECT_EQ(train_total, 54000u);
  EXPECT_EQ(val_total, 6000u);
  EXPECT_EQ(test_total, 10000u);
}

TEST(TrainValidationSplit, SeededDisjointCover) {
  const internal::SplitIndices a = internal::TrainValidationSplit(60000, 1234);
  EXPECT_EQ(a.validation.size(), 6000u);
  EXPECT_EQ(a.train.size(), 54000u);
  std::vector<int> seen(60000);
  for (size_t i : a.train) ++seen[i];
  for (size_t i : a.validation) ++seen[i];
  EXPECT_TRUE(std::all_of(seen.begin(), seen.end(), [](int s) { return s == 1; }));
  EXPECT_TRUE(std::is_sorted(a.train.begin(), a.train.end()));
  EXPECT_EQ(a.validation, internal::TrainValidationSplit(60000, 1234).validation);
  EXPECT_NE(a.validation, internal::TrainValidationSplit(60000, 1235).validation);
  // Independent of the partition permutation of the same seed.
  std::vector<size_t> first = SeededPermutation(60000, 1234);
  first.resize(6000);
  std::sort(first.begin(), first.end());
  EXPECT_NE(first, a.validation);
}

// ---- errors and other sources ----

using LoadDatasetTest = TempDirTest;

TEST_F(LoadDatasetTest, MissingDirNamesPathAndPackage) {
  DataOptions o;
  o.data_dir = (dir_ / "absent").string();
  Result<Splits> s = LoadDataset(o);
  EXPECT_EQ(s.status().code(), StatusCode::kNotFound);
  EXPECT_THAT(s.status().message(), HasSubstr("absent/train-images-idx3-ubyte"));
  EXPECT_THAT(s.status().message(), HasSubstr("dataset-fashion-mnist"));
  EXPECT_THAT(s.status().message(), HasSubstr("scripts/setup.sh"));
}

TEST_F(LoadDatasetTest, MissingSingleFile) {
  LinkFashion("t10k-labels-idx1-ubyte.gz");
  DataOptions o;
  o.data_dir = dir_.string();
  Result<Splits> s = LoadDataset(o);
  EXPECT_EQ(s.status().code(), StatusCode::kNotFound);
  EXPECT_THAT(s.status().message(), HasSubstr("t10k-labels-idx1-ubyte"));
}

TEST_F(LoadDatasetTest, WrongLabelCount) {
  LinkFashion("train-labels-idx1-ubyte.gz");
  std::vector<uint8_t> labels = RealTrainLabels();
  labels.pop_back();
  WriteFile(dir_ / "train-labels-idx1-ubyte.gz", IdxLabels(labels), true);
  DataOptions o;
  o.data_dir = dir_.string();
  Result<Splits> s = LoadDataset(o);
  EXPECT_EQ(s.status().code(), StatusCode::kDataLoss);
  EXPECT_THAT(s.status().message(), HasSubstr("train-labels-idx1-ubyte.gz"));
  EXPECT_THAT(s.status().message(), HasSubstr("59999 labels for the 60000 images"));
}

TEST_F(LoadDatasetTest, LabelOutOfRange) {
  LinkFashion("train-labels-idx1-ubyte.gz");
  std::vector<uint8_t> labels = RealTrainLabels();
  labels[123] = 10;
  WriteFile(dir_ / "train-labels-idx1-ubyte", IdxLabels(labels), false);  // plain file
  DataOptions o;
  o.data_dir = dir_.string();
  Result<Splits> s = LoadDataset(o);
  EXPECT_EQ(s.status().code(), StatusCode::kDataLoss);
  EXPECT_THAT(s.status().message(), HasSubstr("train-labels-idx1-ubyte: label 10 of sample 123"));
}

TEST_F(LoadDatasetTest, MnistNeedsDataDirAndReadsPlainOrGzip) {
  DataOptions o;
  o.name = "mnist";
  EXPECT_EQ(LoadDataset(o).status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(LoadDataset(o).status().message(), HasSubstr("--data-dir"));
  // Same file names: a directory of Fashion-MNIST files with one plain labels file loads as
  // "mnist", normalised with MNIST's statistics instead.
  LinkFashion("train-labels-idx1-ubyte.gz");
  WriteFile(dir_ / "train-labels-idx1-ubyte", IdxLabels(RealTrainLabels()), false);
  o.data_dir = dir_.string();
  Result<Splits> s = LoadDataset(o);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_EQ(s->train.size(), 54000u);
  EXPECT_NEAR(s->test.Features().minCoeff(), -0.1307 / 0.3081, 1e-5);
}

TEST_F(LoadDatasetTest, TestOnlyReadsNoTrainingFile) {
  LinkFashion("train-images-idx3-ubyte.gz");  // no training images at all
  fs::remove(dir_ / "train-labels-idx1-ubyte.gz");
  DataOptions o;
  o.data_dir = dir_.string();
  DataSelection sel;
  sel.test_only = true;
  Result<Splits> s = LoadDataset(o, sel);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_EQ(s->train.size(), 0u);
  EXPECT_EQ(s->validation.size(), 0u);
  EXPECT_EQ(s->test.size(), 10000u);
  EXPECT_EQ(s->train.shape, (Shape{1, 28, 28}));
  sel.test_only = false;
  EXPECT_EQ(LoadDataset(o, sel).status().code(), StatusCode::kNotFound);
}

TEST(LoadDataset, SelectionOfNoPeerIsRefusedBeforeReading) {
  DataSelection sel;
  sel.size = 4;
  sel.rank = 4;
  Result<Splits> s = LoadDataset(DataOptions{}, sel);
  EXPECT_EQ(s.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(s.status().message(), HasSubstr("rank 4 of size 4"));
  sel.rank = 0;
  sel.weights = {1, 2};
  EXPECT_EQ(LoadDataset(DataOptions{}, sel).status().code(), StatusCode::kInvalidArgument);
}

TEST(LoadDataset, UnknownNameListsChoices) {
  DataOptions o;
  o.name = "imagenet";
  Result<Splits> s = LoadDataset(o);
  EXPECT_EQ(s.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(s.status().message(), HasSubstr("fashion-mnist, mnist, cifar10, synthetic"));
}

TEST(LoadDataset, NamesAndDefaultDirs) {
  EXPECT_THAT(DatasetNames(),
              ::testing::ElementsAre("fashion-mnist", "mnist", "cifar10", "synthetic"));
  EXPECT_EQ(DefaultDataDir("fashion-mnist"), "/usr/share/datasets/fashion-mnist");
  EXPECT_EQ(DefaultDataDir("mnist"), "");
  EXPECT_EQ(DefaultDataDir("nope"), "");
}

// ---- CIFAR-10 ----

// A batch file of `records` records: label r % 10, channel c pixels all (r + 50 * c) % 256.
std::vector<uint8_t> CifarBatch(int records, int first) {
  std::vector<uint8_t> bytes;
  for (int r = first; r < first + records; ++r) {
    bytes.push_back(static_cast<uint8_t>(r % 10));
    for (int c = 0; c < 3; ++c) bytes.insert(bytes.end(), 1024, static_cast<uint8_t>(r + 50 * c));
  }
  return bytes;
}

using CifarTest = TempDirTest;

TEST_F(CifarTest, LoadsBatchesWithPerChannelNormalisation) {
  const fs::path batches = dir_ / "cifar-10-batches-bin";  // the archive's folder is accepted
  fs::create_directories(batches);
  for (int b = 1; b <= 5; ++b) {
    WriteFile(batches / fmt::format("data_batch_{}.bin", b), CifarBatch(20, 20 * b), false);
  }
  WriteFile(batches / "test_batch.bin", CifarBatch(20, 0), false);
  DataOptions o;
  o.name = "cifar10";
  o.data_dir = dir_.string();
  Result<Splits> s = LoadDataset(o);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_EQ(s->train.size(), 90u);
  EXPECT_EQ(s->validation.size(), 10u);
  ASSERT_EQ(s->test.size(), 20u);
  EXPECT_EQ(s->test.shape, (Shape{3, 32, 32}));
  const float mean[3] = {0.4914f, 0.4822f, 0.4465f}, std[3] = {0.2023f, 0.1994f, 0.2010f};
  const Matrix x = s->test.Features();
  for (int r : {0, 7, 19}) {
    EXPECT_EQ(s->test.y[r], r % 10);
    for (int c = 0; c < 3; ++c) {
      const float expected = ((r + 50 * c) % 256 / 255.0f - mean[c]) / std[c];
      EXPECT_NEAR(x(r, c * 1024), expected, 1e-5);
      EXPECT_NEAR(x(r, c * 1024 + 1023), expected, 1e-5);
    }
  }
}

TEST_F(CifarTest, SelectionEqualsTheCutOfTheWholeSet) {
  for (int b = 1; b <= 5; ++b) {
    WriteFile(dir_ / fmt::format("data_batch_{}.bin", b), CifarBatch(20, 20 * b), false);
  }
  WriteFile(dir_ / "test_batch.bin", CifarBatch(20, 0), false);
  DataOptions o;
  o.name = "cifar10";
  o.data_dir = dir_.string();
  Result<Splits> whole = LoadDataset(o);
  ASSERT_TRUE(whole.ok()) << whole.status().ToString();
  EXPECT_TRUE(whole->train.byte_backed());
  DataSelection sel;
  sel.size = 3;
  sel.rank = 2;
  sel.evaluation_slice = true;
  Result<Splits> part = LoadDataset(o, sel);
  ASSERT_TRUE(part.ok()) << part.status().ToString();
  Result<std::vector<size_t>> shard = ShardIndices(90, 3, 2, o.seed);
  ASSERT_TRUE(shard.ok());
  EXPECT_TRUE(SameSamples(part->train, whole->train.Subset(*shard)));
  EXPECT_TRUE(
      SameSamples(part->validation, whole->validation.Subset(std::vector<size_t>{6, 7, 8, 9})));
  std::vector<size_t> test_rows;
  for (size_t i = 13; i < 20; ++i) test_rows.push_back(i);
  EXPECT_TRUE(SameSamples(part->test, whole->test.Subset(test_rows)));
}

TEST_F(CifarTest, Errors) {
  DataOptions o;
  o.name = "cifar10";
  EXPECT_EQ(LoadDataset(o).status().code(), StatusCode::kInvalidArgument);  // no --data-dir
  o.data_dir = dir_.string();
  Result<Splits> s = LoadDataset(o);
  EXPECT_EQ(s.status().code(), StatusCode::kNotFound);
  EXPECT_THAT(s.status().message(), HasSubstr("data_batch_1.bin"));
  for (int b = 1; b <= 5; ++b) {
    WriteFile(dir_ / fmt::format("data_batch_{}.bin", b), CifarBatch(3, 0), false);
  }
  std::vector<uint8_t> short_batch = CifarBatch(2, 0);
  short_batch.pop_back();
  WriteFile(dir_ / "test_batch.bin", short_batch, false);
  s = LoadDataset(o);
  EXPECT_EQ(s.status().code(), StatusCode::kDataLoss);
  EXPECT_THAT(s.status().message(), HasSubstr("test_batch.bin: 6145 bytes"));
  std::vector<uint8_t> bad_label = CifarBatch(2, 0);
  bad_label[3073] = 10;
  WriteFile(dir_ / "test_batch.bin", bad_label, false);
  s = LoadDataset(o);
  EXPECT_EQ(s.status().code(), StatusCode::kDataLoss);
  EXPECT_THAT(s.status().message(), HasSubstr("label 10 of sample 1"));
}

// ---- synthetic ----

DataOptions Synthetic(uint64_t seed = 1234) {
  DataOptions o;
  o.name = "synthetic";
  o.seed = seed;
  return o;
}

bool BitEqual(const Dataset& a, const Dataset& b) {
  return a.y == b.y && a.x.rows() == b.x.rows() && a.x.cols() == b.x.cols() &&
         std::memcmp(a.x.data(), b.x.data(), sizeof(float) * a.x.size()) == 0;
}

TEST(Synthetic, ShapesAndDeterminism) {
  Result<Splits> a = LoadDataset(Synthetic()), b = LoadDataset(Synthetic());
  Result<Splits> c = LoadDataset(Synthetic(99));
  ASSERT_TRUE(a.ok() && b.ok() && c.ok()) << a.status().ToString();
  EXPECT_EQ(a->train.size(), 5400u);
  EXPECT_EQ(a->validation.size(), 600u);
  EXPECT_EQ(a->test.size(), 1000u);
  EXPECT_EQ(a->train.shape, (Shape{32, 1, 1}));
  EXPECT_EQ(a->train.num_classes, 10);
  EXPECT_TRUE(BitEqual(a->train, b->train));
  EXPECT_TRUE(BitEqual(a->test, b->test));
  EXPECT_FALSE(BitEqual(a->train, c->train));
}

// Pinned values guard cross-platform reproducibility; change them only deliberately. Cross-checked
// against an independent Python implementation of the generator described in synthetic.cc.
TEST(Synthetic, GoldenValues) {
  Result<Splits> s = LoadDataset(Synthetic());
  ASSERT_TRUE(s.ok());
  EXPECT_THAT(std::vector<int32_t>(s->train.y.begin(), s->train.y.begin() + 8),
              ::testing::ElementsAre(8, 7, 5, 3, 5, 2, 8, 6));
  EXPECT_NEAR(s->train.x(0, 0), 0.519586384f, 1e-6);
}

TEST(Synthetic, ClassMeansAreSeparatedAndLearnable) {
  Result<Splits> s = LoadDataset(Synthetic());
  ASSERT_TRUE(s.ok());
  const Dataset& train = s->train;
  Matrix means = Matrix::Zero(10, 32);
  std::vector<int> counts(10);
  for (size_t i = 0; i < train.size(); ++i) {
    means.row(train.y[i]) += train.x.row(static_cast<Eigen::Index>(i));
    ++counts[train.y[i]];
  }
  for (int k = 0; k < 10; ++k) {
    EXPECT_GT(counts[k], 400);
    means.row(k) /= static_cast<float>(counts[k]);
  }
  // Nearest class mean on the held-out test set: well above chance, not trivially perfect.
  int correct = 0;
  for (size_t i = 0; i < s->test.size(); ++i) {
    Eigen::Index best = 0;
    (means.rowwise() - s->test.x.row(static_cast<Eigen::Index>(i)))
        .rowwise()
        .squaredNorm()
        .minCoeff(&best);
    correct += best == s->test.y[i];
  }
  const double accuracy = correct / static_cast<double>(s->test.size());
  EXPECT_GT(accuracy, 0.7);
  EXPECT_LT(accuracy, 0.99);
}

TEST(Synthetic, SelectionKeepsAFloatPathEqualToTheCut) {
  Result<Splits> whole = LoadDataset(Synthetic());
  ASSERT_TRUE(whole.ok());
  EXPECT_FALSE(whole->train.byte_backed());
  DataSelection sel;
  sel.size = 2;
  sel.rank = 1;
  sel.evaluation_slice = true;
  Result<Splits> part = LoadDataset(Synthetic(), sel);
  ASSERT_TRUE(part.ok());
  Result<std::vector<size_t>> shard = ShardIndices(5400, 2, 1, 1234);
  ASSERT_TRUE(shard.ok());
  EXPECT_TRUE(BitEqual(part->train, whole->train.Subset(*shard)));
  std::vector<size_t> rows;
  for (size_t i = 500; i < 1000; ++i) rows.push_back(i);
  EXPECT_TRUE(BitEqual(part->test, whole->test.Subset(rows)));
  EXPECT_EQ(part->validation.size(), 300u);
}

TEST(Synthetic, InvalidOptions) {
  DataOptions o = Synthetic();
  o.synthetic_dim = 0;
  EXPECT_EQ(LoadDataset(o).status().code(), StatusCode::kInvalidArgument);
  o = Synthetic();
  o.synthetic_classes = 1;
  EXPECT_EQ(LoadDataset(o).status().code(), StatusCode::kInvalidArgument);
  o = Synthetic();
  o.synthetic_train = 0;
  EXPECT_EQ(LoadDataset(o).status().code(), StatusCode::kInvalidArgument);
}

TEST(Dataset, SubsetCopiesRowsInOrder) {
  Dataset d;
  d.shape = Shape{2, 1, 1};
  d.num_classes = 3;
  d.x.resize(3, 2);
  d.x << 0, 1, 10, 11, 20, 21;
  d.y = {0, 1, 2};
  const std::vector<size_t> idx = {2, 0, 2};
  Dataset s = d.Subset(idx);
  EXPECT_EQ(s.y, (std::vector<int32_t>{2, 0, 2}));
  EXPECT_EQ(s.x(0, 1), 21);
  EXPECT_EQ(s.x(1, 0), 0);
  EXPECT_EQ(s.shape, d.shape);
  EXPECT_EQ(s.num_classes, 3);
  EXPECT_EQ(d.Subset({}).size(), 0u);
}

TEST(Dataset, ByteBackedRowsGoThroughTheChannelTables) {
  Dataset d;
  d.shape = Shape{2, 1, 2};  // two channels of two pixels
  d.num_classes = 2;
  d.pixels = {0, 1, 2, 255, 10, 20, 30, 40};
  d.y = {0, 1};
  internal::PixelStats stats{{0.5f, 0.25f}, {0.5f, 0.25f}};
  d.byte_features = internal::ByteFeatures(stats, 2);
  ASSERT_EQ(d.byte_features.size(), 512u);
  Matrix x;
  const std::vector<size_t> rows = {1, 0};
  d.GatherRows(rows, x);
  ASSERT_EQ(x.rows(), 2);
  const float s0 = 1.0f / (255.0f * 0.5f), o0 = -0.5f / 0.5f;
  const float s1 = 1.0f / (255.0f * 0.25f), o1 = -0.25f / 0.25f;
  EXPECT_EQ(x(0, 0), 10.0f * s0 + o0);
  EXPECT_EQ(x(0, 1), 20.0f * s0 + o0);
  EXPECT_EQ(x(0, 2), 30.0f * s1 + o1);  // second channel, its own table
  EXPECT_EQ(x(1, 3), 255.0f * s1 + o1);
  const Dataset sub = d.Subset(rows);
  EXPECT_TRUE(sub.byte_backed());
  EXPECT_EQ(sub.pixels, (std::vector<uint8_t>{10, 20, 30, 40, 0, 1, 2, 255}));
  EXPECT_EQ(sub.y, (std::vector<int32_t>{1, 0}));
  const Dataset f = d.AsFloat();
  EXPECT_FALSE(f.byte_backed());
  EXPECT_EQ(f.x(1, 0), x(0, 0));
  EXPECT_EQ(f.Features().rows(), 2);
}

}  // namespace
}  // namespace p2p::ml
