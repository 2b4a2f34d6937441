// Shard files: one peer's slice of a training set on disk, so peers can start from a file instead
// of loading and partitioning the whole dataset. The byte layout is specified in
// docs/shard-format.md; this module is the only code that reads or writes it.
//
// All functions are thread-safe (no shared state); concurrent writers of one path each produce a
// complete file and the last rename wins.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"
#include "ml/dataset.h"

namespace p2p::ml {

inline constexpr uint32_t kShardFormatVersion = 1;

// Where a shard file's samples come from. Shape, num_classes and the sample count are taken from
// the Dataset itself.
struct ShardInfo {
  std::string dataset;  // e.g. "fashion-mnist"; at most 255 bytes
  int rank = 0;         // 0 <= rank < size
  int size = 1;         // number of peers the training set was partitioned among
  int batch = -1;       // -1: the rank's whole shard; else this file's batch, 0 <= batch < batches
  int batches = 0;      // number of per-batch files the rank's shard was cut into (0: none)
  uint64_t seed = 0;    // the ShardIndices seed
  bool operator==(const ShardInfo&) const = default;
};

struct ShardFile {
  ShardInfo info;
  Dataset data;
};

// Writes `data` with `info` to `path` atomically: a temporary file in the same directory is
// written, fsync'ed and renamed over `path`, so a reader sees the old file or the whole new one.
// kInvalidArgument if info is inconsistent (rank >= size, ...) or labels are out of range;
// kIoError if the OS refuses.
Status WriteShardFile(const std::string& path, const Dataset& data, const ShardInfo& info);

// Reads and fully validates a shard file. kNotFound if absent; kDataLoss naming the file and
// what is wrong for a bad magic, an unsupported version, an implausible header, a size that does
// not match the header (truncation), a CRC mismatch, or a label out of range. Sizes are checked
// against the file's length before anything is allocated.
Result<ShardFile> ReadShardFile(const std::string& path);

// Reads and validates only the header (the same checks as ReadShardFile up to and including the
// file length, but not the CRC or the labels), without reading the samples: what a run checks
// against its flags before it loads anything (a shard written for another rank, size, dataset
// or seed is refused up front).
Result<ShardInfo> ReadShardInfo(const std::string& path);

// How `p2ptrain split` cuts a training set into shard files.
struct SplitOptions {
  std::string dataset;          // recorded in every header, e.g. "fashion-mnist"
  int size = 1;                 // number of peers
  int batches = 0;              // > 0: also cut each rank's shard into this many batch files
  uint64_t seed = 1234;         // ShardIndices seed; use DataOptions::seed to match LoadDataset
  std::vector<double> weights;  // empty: equal shards; else one positive weight per rank
};

// out_dir/rank-<rank>.shard
std::string ShardPath(const std::string& out_dir, int rank);
// out_dir/rank-<rank>/batch-<batch>.shard
std::string BatchShardPath(const std::string& out_dir, int rank, int batch);

// Writes every rank's shard: ShardPath(out_dir, r) holds exactly
// train.Subset(ShardIndices(train.size(), size, r, seed, weights)), in that order; with
// batches > 0, BatchShardPath(out_dir, r, b) holds the b-th of `batches` contiguous, near-equal
// slices of it (the first size % batches slices one sample longer). Creates out_dir. Everything
// is validated before the first file is written: kInvalidArgument for bad options or more
// batches than the smallest shard has samples. Files of an earlier, larger split are not removed.
Status WriteSplit(const Dataset& train, const SplitOptions& options, const std::string& out_dir);

}  // namespace p2p::ml
