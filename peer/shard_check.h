// Refusing a shard file written for another run: the header records the rank, size, dataset and
// partition seed `p2ptrain split` cut it for, and a process that trains on it must agree.
// Otherwise, e.g. `launch --size 3 -- --shard shards/rank-1.shard` (the {rank} placeholder
// forgotten), every peer trains on the same samples and the run reports success.
#pragma once

#include <optional>
#include <string>

#include "common/status.h"
#include "ml/shard_file.h"
#include "peer/train_config.h"

namespace p2p::peer {

// What the run expects of a shard. check_rank: whether rank/size must match (`peer` always; `train`
// when --size or --rank was given: `train --shard FILE` alone on one rank's shard is the
// documented single-peer comparison and may use any rank's shard).
struct ShardExpectation {
  std::optional<std::string> dataset;  // the run's --dataset (not checked if empty)
  std::optional<uint64_t> seed;        // the run's --data-seed (not checked if empty)
  bool check_rank = true;
  int rank = 0, size = 1;
};

// kInvalidArgument naming `path`, every field that differs and how to fix it (for a wrong rank,
// the {rank} placeholder of `p2ptrain launch`).
Status CheckShardInfo(const std::string& path, const ml::ShardInfo& info,
                      const ShardExpectation& want);

// Reads config.shard_path's header (if --shard was given) and checks it against the run's flags.
Status CheckShardForRun(const TrainConfig& config, bool check_rank);

// `path` with a "rank-<r>" component written as "rank-{rank}", for the hint; if there is none,
// an example under the path's directory.
std::string WithRankPlaceholder(const std::string& path);

}  // namespace p2p::peer
