#include "peer/data_loading.h"

#include <spdlog/spdlog.h>

#include <vector>

#include "ml/shard_file.h"

namespace p2p::peer {
namespace {

// The rows this process keeps; a peer keeps only its evaluation slices.
ml::DataSelection Selection(const TrainConfig& config) {
  ml::DataSelection s;
  s.size = config.size;
  s.rank = config.rank;
  s.weights = config.partition;
  s.evaluation_slice = config.evaluation_slice;
  return s;
}

// Moves the rows of `d` so that row p holds what row src[p] held (src a permutation), in place:
// one row of scratch instead of a second copy of the features.
void PermuteRows(ml::Dataset& d, std::span<const size_t> src) {
  const Eigen::Index cols = d.x.cols();
  std::vector<bool> done(src.size());
  Eigen::RowVectorXf row(cols);
  for (size_t start = 0; start < src.size(); ++start) {
    if (done[start]) continue;
    row = d.x.row(static_cast<Eigen::Index>(start));
    const int32_t label = d.y[start];
    size_t cur = start;
    for (;;) {  // follow the cycle through `start`
      done[cur] = true;
      const size_t next = src[cur];
      if (next == start) break;
      d.x.row(static_cast<Eigen::Index>(cur)) = d.x.row(static_cast<Eigen::Index>(next));
      d.y[cur] = d.y[next];
      cur = next;
    }
    d.x.row(static_cast<Eigen::Index>(cur)) = row;
    d.y[cur] = label;
  }
}

// A shard file's samples: a seeded 10% (order[0, n_val)) held out for validation, the rest
// (order[n_val, n)) for training, the same rows in the same order as Subset of each, without
// holding the shard's features twice.
void SplitShard(ml::Dataset shard, uint64_t seed, ml::Splits& out) {
  P2P_CHECK(!shard.byte_backed(), "shard files hold float features");
  const size_t n = shard.size(), n_val = n / 10;
  const auto order = ml::SeededPermutation(n, seed);
  std::vector<size_t> src(order.begin() + static_cast<ptrdiff_t>(n_val), order.end());
  src.insert(src.end(), order.begin(), order.begin() + static_cast<ptrdiff_t>(n_val));
  PermuteRows(shard, src);  // training rows first, validation rows last
  std::vector<size_t> tail(n_val);
  for (size_t i = 0; i < n_val; ++i) tail[i] = n - n_val + i;
  out.validation = shard.Subset(tail);
  // Shrinking a row-major matrix keeps its leading rows in place.
  shard.x.conservativeResize(static_cast<Eigen::Index>(n - n_val), shard.x.cols());
  shard.y.resize(n - n_val);
  shard.y.shrink_to_fit();
  out.train = std::move(shard);
}

// A shard file carries only training samples: hold out a seeded 10% for validation and take the
// test set from the dataset the shard was cut from, when it is available here.
Result<ml::Splits> FromShardFile(const TrainConfig& config) {
  P2P_ASSIGN_OR_RETURN(ml::ShardFile shard, ml::ReadShardFile(config.shard_path));
  const ml::Shape shape = shard.data.shape;
  ml::Splits splits;
  SplitShard(std::move(shard.data), config.data.seed, splits);
  ml::DataSelection selection = Selection(config);
  if (config.evaluation_slice) {  // this peer's slice of its own held-out 10%
    const size_t n = splits.validation.size(), size = static_cast<size_t>(config.size);
    const size_t r = static_cast<size_t>(config.rank);
    std::vector<size_t> rows;
    for (size_t i = n * r / size; i < n * (r + 1) / size; ++i) rows.push_back(i);
    splits.validation = splits.validation.Subset(rows);
  }
  ml::DataOptions source = config.data;
  source.name = shard.info.dataset;
  selection.test_only = true;
  auto test = ml::LoadDataset(source, selection);
  if (test.ok()) {
    splits.test = std::move(test->test);
  } else {
    spdlog::warn("no test set for shard {} ({}); test accuracy will not be measured",
                 config.shard_path, test.status().message());
    splits.test.shape = shape;
  }
  return splits;
}

}  // namespace

Result<ml::Splits> LoadTrainingData(const TrainConfig& config) {
  ml::Splits splits;
  if (!config.shard_path.empty()) {
    P2P_ASSIGN_OR_RETURN(splits, FromShardFile(config));
  } else {
    P2P_ASSIGN_OR_RETURN(splits, ml::LoadDataset(config.data, Selection(config)));
  }
  spdlog::info("data: {} train / {} validation / {} test samples of shape {}{}",
               splits.train.size(), splits.validation.size(), splits.test.size(),
               splits.train.shape.ToString(),
               config.evaluation_slice ? " (this peer's slices of validation and test)" : "");
  return splits;
}

}  // namespace p2p::peer
