// Datasets in memory, how they are read, split and partitioned among peers.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "common/status.h"
#include "ml/tensor.h"

namespace p2p::ml {

// N samples: features (N, shape.size()) already normalised, labels in [0, num_classes).
struct Dataset {
  Matrix x;
  std::vector<int32_t> y;
  Shape shape;
  int num_classes = 10;
  size_t size() const { return y.size(); }
  // Rows `indices` (in that order) as a new dataset.
  Dataset Subset(std::span<const size_t> indices) const;
};

struct DataOptions {
  std::string name = "fashion-mnist";  // fashion-mnist | mnist | cifar10 | synthetic
  std::string data_dir;                // empty: the dataset's default location
  uint64_t seed = 1234;                // split and partition permutation
  // synthetic only: a seeded, learnable Gaussian-mixture classification problem. Like the
  // image datasets, `synthetic_train` samples form the "training file" that is split 90/10.
  size_t synthetic_train = 6000, synthetic_test = 1000;
  int synthetic_dim = 32, synthetic_classes = 10;
};

// train + validation (seeded 90/10 split of the training file) + test.
struct Splits {
  Dataset train, validation, test;
};

std::vector<std::string> DatasetNames();
std::string DefaultDataDir(const std::string& name);  // e.g. /usr/share/datasets/fashion-mnist

// Reads, normalises (per-dataset mean/std of pixel/255) and splits. Missing files: kNotFound
// naming the path and the Debian package; corrupt or truncated: kDataLoss naming the file and
// what is wrong; unknown name, or mnist/cifar10 without data_dir: kInvalidArgument.
// Deterministic: the same options give the same bits in every process. Thread-safe.
Result<Splits> LoadDataset(const DataOptions& options);

// IDX files (plain or .gz): images as uint8 (N, rows*cols), labels as uint8. The file must hold
// exactly what its header declares: kDataLoss (naming the file) otherwise; kNotFound if absent.
struct IdxImages {
  std::vector<uint8_t> pixels;
  size_t count = 0;
  int rows = 0, cols = 0;
};
Result<IdxImages> ReadIdxImages(const std::string& path);
Result<std::vector<uint8_t>> ReadIdxLabels(const std::string& path);

// Indices of the training samples owned by `rank` of `size` peers: contiguous slices of one
// permutation of [0, n) seeded by `seed`, with sizes proportional to `weights` (empty = equal).
// Every index appears in exactly one shard; the remainder is spread, never dropped.
// kInvalidArgument if rank >= size, weights.size() != size, or a weight is not positive.
// Shard sizes: largest remainder of n * w_r / sum(w), ties to the lower rank; with equal weights
// the first n % size ranks get one extra sample. kInvalidArgument also if size < 1.
Result<std::vector<size_t>> ShardIndices(size_t n, int size, int rank, uint64_t seed,
                                         std::span<const double> weights = {});
// The permutation of [0, n) that ShardIndices slices: identical on every platform for a seed.
std::vector<size_t> SeededPermutation(size_t n, uint64_t seed);
// "3,1,1,1" -> {3,1,1,1}; "" -> {} (equal shares); kInvalidArgument on anything else, including a
// weight that is not a positive finite number.
Result<std::vector<double>> ParseWeights(const std::string& text);

}  // namespace p2p::ml
