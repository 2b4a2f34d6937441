// Private to ml/dataset*.cc, idx.cc, cifar.cc, synthetic.cc, partition.cc, shard_file.cc: the
// pieces the dataset loaders share. Not part of the public API; include ml/dataset.h instead.
#pragma once

#include <cmath>
#include <cstdint>
#include <functional>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "common/status.h"
#include "ml/dataset.h"

namespace p2p::ml::internal {

// Randomness that gives the same numbers on every platform and standard library.
// std::mt19937_64's output sequence is fixed by the standard, but the distributions
// (uniform_int_distribution, normal_distribution, std::shuffle) are implementation-defined, so
// everything above the raw 64-bit outputs is written here. `stream` separates independent uses
// of one user seed (the split permutation must not equal the partition permutation).
// Normal() uses std::log/std::cos/std::sin, which glibc rounds identically on every x86-64 and
// aarch64 build; bit-identity across other libms is not promised.
class DetRng {
 public:
  DetRng(uint64_t seed, uint64_t stream) : gen_(Mix(seed, stream)) {}

  uint64_t Next() { return gen_(); }
  // Uniform in [0, bound), bound > 0, without modulo bias (rejection sampling).
  uint64_t Below(uint64_t bound) {
    const uint64_t threshold = (0 - bound) % bound;  // 2^64 mod bound
    for (;;) {
      const uint64_t r = gen_();
      if (r >= threshold) return r % bound;
    }
  }
  // Uniform in [0, 1) with 53 random bits.
  double Uniform() { return static_cast<double>(gen_() >> 11) * 0x1.0p-53; }
  // Standard normal by Box-Muller; the second value of each pair is kept for the next call.
  double Normal() {
    if (has_spare_) {
      has_spare_ = false;
      return spare_;
    }
    const double u1 = static_cast<double>((gen_() >> 11) + 1) * 0x1.0p-53;  // (0, 1]: log is finite
    const double u2 = Uniform();
    const double r = std::sqrt(-2.0 * std::log(u1));
    const double theta = 6.283185307179586476925 * u2;
    spare_ = r * std::sin(theta);
    has_spare_ = true;
    return r * std::cos(theta);
  }

 private:
  // SplitMix64 finaliser of (seed, stream): nearby seeds give unrelated generator states.
  static uint64_t Mix(uint64_t seed, uint64_t stream) {
    uint64_t z = seed + 0x9E3779B97F4A7C15ull * (stream + 1);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }

  std::mt19937_64 gen_;
  double spare_ = 0;
  bool has_spare_ = false;
};

// Streams of DetRng; one per independent use of DataOptions::seed.
enum RngStream : uint64_t {
  kPartitionStream = 0,  // ShardIndices / SeededPermutation
  kSplitStream = 1,      // train/validation split
  kSyntheticMeans = 2,
  kSyntheticTrain = 3,
  kSyntheticTest = 4,
};

// Fisher-Yates over [0, n) driven by `rng`.
std::vector<size_t> Permutation(size_t n, DetRng& rng);

// The seeded 90/10 split of a training file of n samples: both lists ascending, disjoint, and
// together [0, n). Validation gets n / 10 samples.
struct SplitIndices {
  std::vector<size_t> train, validation;
};
SplitIndices TrainValidationSplit(size_t n, uint64_t seed);

// Per-channel mean and std of pixel/255; a single-channel dataset uses entry 0 only.
struct PixelStats {
  float mean[3];
  float std[3];
};

// Dataset::byte_features for `channels` (1..3) channels: entry 256 * c + p is
// (p / 255 - mean[c]) / std[c], computed in float as p * (1 / (255 std)) + (-mean / std). The
// build uses -ffp-contract=off, so this rounds the same way in every process and every batch.
std::vector<float> ByteFeatures(const PixelStats& stats, int channels);

// The file rows each split keeps, in the order the split holds them: `train` and `validation` are
// rows of the training file (n_train samples), `test` rows of the test file (n_test).
// kInvalidArgument if the selection's rank/size/weights are unusable.
struct SplitRows {
  std::vector<size_t> train, validation, test;
};
Result<SplitRows> SelectRows(size_t n_train, size_t n_test, uint64_t seed,
                             const DataSelection& selection);

// Fills byte-backed datasets from one source file read front to back: each destination is
// registered with the file rows it keeps, then every row of the file is offered once, in order,
// and copied wherever it is wanted. So a loader holds only the kept rows plus its read buffer.
class RowRouter {
 public:
  RowRouter(Shape shape, int num_classes, std::vector<float> byte_features)
      : shape_(shape), num_classes_(num_classes), byte_features_(std::move(byte_features)) {}
  // `dest` becomes rows.size() samples of this shape: row i will be file row rows[i], label
  // labels[rows[i]]. Preconditions: every row < labels.size(); no Offer yet.
  void Add(std::span<const size_t> rows, std::span<const uint8_t> labels, Dataset& dest);
  // File row `row`'s pixels (shape.size() bytes). Rows must come in increasing order.
  void Offer(size_t row, const uint8_t* pixels);
  // True once every registered row was offered.
  bool Complete() const { return sorted_ && next_ == targets_.size(); }

 private:
  struct Target {
    size_t row;
    uint8_t* dst;
  };
  Shape shape_;
  int num_classes_;
  std::vector<float> byte_features_;
  std::vector<Target> targets_;  // sorted by row at the first Offer
  bool sorted_ = false;
  size_t next_ = 0;
};

// kDataLoss naming `source` if some label is >= num_classes.
Status ValidateLabels(std::span<const uint8_t> labels, int num_classes, const std::string& source);

// IDX images, streamed: StreamIdxImages checks the header and passes it to `on_header` (whose
// error stops the read), then hands `sink` every image in file order, in blocks of whole images
// (`n` images from image `first`, back to back), and checks the file holds exactly what the header
// declared: kDataLoss naming the file otherwise, kNotFound if it is absent.
struct IdxImagesHeader {
  size_t count = 0;
  int rows = 0, cols = 0;
};
using IdxHeaderFn = std::function<Status(const IdxImagesHeader&)>;
using ImageBlockFn = std::function<void(const uint8_t* images, size_t first, size_t n)>;
Status StreamIdxImages(const std::string& path, const IdxHeaderFn& on_header,
                       const ImageBlockFn& sink);

// Whole contents of a plain or gzip file (zlib decides), at most max_bytes of decompressed data.
// kNotFound if absent, kDataLoss for a corrupt/truncated gzip stream or more than max_bytes.
Result<std::vector<uint8_t>> ReadWholeFile(const std::string& path, size_t max_bytes);

// Loaders behind LoadDataset for the non-IDX formats; `dir` is already resolved and non-empty.
Result<Splits> LoadCifar10(const std::string& dir, const PixelStats& stats, uint64_t seed,
                           const DataSelection& selection);
Result<Splits> MakeSynthetic(const DataOptions& options, const DataSelection& selection);

}  // namespace p2p::ml::internal
