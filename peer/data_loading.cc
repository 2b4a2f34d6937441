#include "peer/data_loading.h"

#include <spdlog/spdlog.h>

#include "ml/shard_file.h"

namespace p2p::peer {
namespace {

// A shard file carries only training samples: hold out a seeded 10% for validation and take the
// test set from the dataset the shard was cut from, when it is available here.
Result<ml::Splits> FromShardFile(const TrainConfig& config) {
  P2P_ASSIGN_OR_RETURN(ml::ShardFile shard, ml::ReadShardFile(config.shard_path));
  ml::Splits splits;
  const auto order = ml::SeededPermutation(shard.data.size(), config.data.seed);
  const size_t n_val = shard.data.size() / 10;
  splits.validation = shard.data.Subset(std::span(order).first(n_val));
  splits.train = shard.data.Subset(std::span(order).subspan(n_val));
  ml::DataOptions source = config.data;
  source.name = shard.info.dataset;
  auto full = ml::LoadDataset(source);
  if (full.ok()) {
    splits.test = std::move(full->test);
  } else {
    spdlog::warn("no test set for shard {} ({}); test accuracy will not be measured",
                 config.shard_path, full.status().message());
    splits.test.shape = shard.data.shape;
  }
  return splits;
}

}  // namespace

Result<ml::Splits> LoadTrainingData(const TrainConfig& config) {
  ml::Splits splits;
  if (!config.shard_path.empty()) {
    P2P_ASSIGN_OR_RETURN(splits, FromShardFile(config));
  } else {
    P2P_ASSIGN_OR_RETURN(splits, ml::LoadDataset(config.data));
    if (config.size > 1) {
      P2P_ASSIGN_OR_RETURN(auto indices,
                           ml::ShardIndices(splits.train.size(), config.size, config.rank,
                                            config.data.seed, config.partition));
      splits.train = splits.train.Subset(indices);
    }
  }
  spdlog::info("data: {} train / {} validation / {} test samples of shape {}", splits.train.size(),
               splits.validation.size(), splits.test.size(), splits.train.shape.ToString());
  return splits;
}

}  // namespace p2p::peer
