#include "peer/train_config.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace p2p::peer {

std::string TrainConfig::Fingerprint() const {
  // Not the shard's path: every rank reads its own file (shards/rank-{rank}.shard), and peers
  // compare fingerprints. The shard's header was checked against data.name, data.seed, size and
  // rank (peer/shard_check.h), so the dataset stands for the file here.
  const std::string data_source = shard_path.empty() ? data.name : "shard:" + data.name;
  const std::string synthetic =
      data.name == "synthetic"
          ? fmt::format(" synthetic={}x{}", data.synthetic_train, data.synthetic_dim)
          : "";
  return fmt::format(
      "model={} hidden={} dropout={} loss={} data={}{} data_seed={} optimizer={} lr={} "
      "momentum={} nesterov={} wd={} batch={} seed={} size={} partition={} sync_every={}{}",
      model.name, fmt::join(model.hidden, "x"), model.dropout, loss, data_source, synthetic,
      data.seed, optimizer.name, optimizer.lr, optimizer.momentum, optimizer.nesterov,
      optimizer.weight_decay, batch_size, seed, size, fmt::join(partition, ":"), sync_every,
      // The lr of every epoch must agree across peers. Added only when not the default, so the
      // fingerprint of runs (and checkpoints) from before the flags existed is unchanged.
      lr_schedule.ToString() == ml::EpochScheduleOptions{}.ToString()
          ? ""
          : " lr_schedule=" + lr_schedule.ToString());
}

void TrainConfig::ResolveDefaults() {
  if (optimizer.momentum < 0) optimizer.momentum = optimizer.name == "sgd" ? 0.9f : 0.0f;
}

}  // namespace p2p::peer
