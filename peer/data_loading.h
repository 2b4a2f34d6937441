// Where a training process gets its data: the whole dataset, its shard of it, or a shard file.
#pragma once

#include "common/status.h"
#include "ml/dataset.h"
#include "peer/train_config.h"

namespace p2p::peer {

// train = this rank's shard (the whole training split when size == 1), validation and test as
// loaded; with config.evaluation_slice (a peer) only this rank's slices of validation and test are
// read. With --shard FILE, train comes from the file and validation is a seeded 10% of it, and
// only the test set is read from the dataset. Image data stays uint8 (ml::Dataset).
Result<ml::Splits> LoadTrainingData(const TrainConfig& config);

}  // namespace p2p::peer
