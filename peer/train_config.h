// Configuration of one training process (the single-process baseline, and later each peer).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ml/dataset.h"
#include "ml/epoch_schedule.h"
#include "ml/model.h"
#include "ml/optimizer.h"
#include "serverless_offload/pool.h"

namespace p2p::peer {

// --offload: where gradient work runs. Not part of the fingerprint: it changes only the
// summation order of a peer's local gradient, and peers average each other's exactly.
struct OffloadConfig {
  std::string mode = "none";  // none | process | amqp
  offload::PoolOptions pool;
  std::string price_table;                  // JSON file; empty = the built-in prices
  std::string instance_type = "t2.medium";  // what each peer runs on, for the cost estimate
};

struct TrainConfig {
  ml::DataOptions data;
  ml::ModelOptions model;
  // lr 0.02 is the study's. momentum < 0 means "the optimizer's default": 0.9 for sgd (plain SGD
  // needs many more epochs), 0 for the others; ResolveDefaults() fills it in.
  ml::OptimizerOptions optimizer = {.name = "sgd", .lr = 0.02f, .momentum = -1.0f};
  std::string loss = "cross_entropy";
  std::string shard_path;  // train from a `p2ptrain split` shard file instead of --dataset
  int batch_size = 64;
  int epochs = 10;
  uint64_t seed = 1;       // model init and batch order
  int threads = 0;         // 0 = all cores
  bool evaluation = true;  // validation loss + test accuracy every epoch
  bool lr_plateau = true;  // ReduceLROnPlateau on validation loss
  // --lr-schedule, --warmup-epochs, --lr-scale (scaled by `size`) and their parameters.
  ml::EpochScheduleOptions lr_schedule;
  bool early_stopping = true;  // the study's early stopping (patience 10)
  int early_stopping_patience = 10;
  std::string metrics_path;
  std::string checkpoint_dir;
  bool resume = false;
  bool overwrite = false;         // start over in a --checkpoint-dir that holds a checkpoint
  std::string progress = "auto";  // auto | bar | lines | off
  int size = 1, rank = 0;         // this process's place among peers (1, 0 when alone)
  std::vector<double> partition;  // shard weights, empty = equal
  // A peer: hold and evaluate only slice `rank` of `size` of the validation and test sets (the
  // peers sum their slices). Not in the fingerprint: it changes what is held, not the run.
  bool evaluation_slice = false;
  // Minibatches per synchronisation round (gradient accumulation when alone); 0 = one round per
  // epoch over the whole shard (the study's scheme).
  int64_t sync_every = 1;
  OffloadConfig offload;

  // A stable text of everything that must agree between a checkpoint and a resumed run and between
  // the peers of a run: model, data, optimizer, batch size, seed, partition, sync schedule.
  std::string Fingerprint() const;
  void ResolveDefaults();
};

}  // namespace p2p::peer
