// Datasets in memory, how they are read, split and partitioned among peers.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "common/status.h"
#include "ml/tensor.h"

namespace p2p::ml {

// N samples: labels in [0, num_classes) and features (N, shape.size()), normalised, held one of
// two ways:
// - float: `x` holds the features (synthetic data, shard files);
// - bytes: `pixels` holds the source's uint8 values (N, shape.size()), 4x smaller, and
//   `byte_features` maps each byte of channel c to its feature (entry 256 * c + byte); `x` is
//   empty. GatherRows / RowRange make float features per batch, bit-identical to normalising the
//   whole set up front.
// Read features through GatherRows / RowRange, which serve both.
struct Dataset {
  Matrix x;
  std::vector<uint8_t> pixels;
  std::vector<float> byte_features;  // empty for a float dataset
  std::vector<int32_t> y;
  Shape shape;
  int num_classes = 10;
  size_t size() const { return y.size(); }
  bool byte_backed() const { return !byte_features.empty(); }
  // Rows `rows` (in that order) as float features: `out` becomes (rows.size(), shape.size()).
  void GatherRows(std::span<const size_t> rows, Matrix& out) const;
  // Rows [begin, begin + n) as float features into `out`.
  void RowRange(size_t begin, size_t n, Matrix& out) const;
  // Every row as float features (for a byte dataset, a copy 4x its size).
  Matrix Features() const;
  // The same samples stored as float (a copy; for writers of float formats such as shard files).
  Dataset AsFloat() const;
  // Rows `indices` (in that order) as a new dataset, stored the same way.
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

// Which samples of a dataset a process holds; the default holds all of them. Selection is done on
// indices before the samples are read, so a peer never holds (or converts) the others' samples.
struct DataSelection {
  // Training split: with size > 1, ShardIndices(train, size, rank, seed, weights), in that order
  // (the same rows and order as Subset of the whole split); with size 1, all of it in file order.
  int size = 1, rank = 0;
  std::vector<double> weights;
  // Validation and test: only the contiguous slice [n * rank / size, n * (rank + 1) / size), the
  // part a peer evaluates (together the peers cover every sample once).
  bool evaluation_slice = false;
  // Skip the training file altogether (train and validation are empty): a shard file brings its
  // own training samples and only needs the test set.
  bool test_only = false;
};

std::vector<std::string> DatasetNames();
std::string DefaultDataDir(const std::string& name);  // e.g. /usr/share/datasets/fashion-mnist

// Reads, normalises (per-dataset mean/std of pixel/255) and splits, keeping only `selection`.
// Image datasets come back byte-backed and are streamed from their files, so memory is the kept
// samples' bytes plus one read buffer. Missing files: kNotFound naming the path and the Debian
// package; corrupt or truncated: kDataLoss naming the file and what is wrong; unknown name,
// mnist/cifar10 without data_dir, or a selection ShardIndices refuses: kInvalidArgument.
// Deterministic: the same options give the same bits in every process. Thread-safe.
Result<Splits> LoadDataset(const DataOptions& options, const DataSelection& selection = {});

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
