#include "peer/train_config.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace p2p::peer {

std::string TrainConfig::Fingerprint() const {
  const std::string data_source = shard_path.empty() ? data.name : "shard:" + shard_path;
  return fmt::format("model={} hidden={} loss={} data={} optimizer={} batch={} seed={} size={}",
                     model.name, fmt::join(model.hidden, "x"), loss, data_source, optimizer.name,
                     batch_size, seed, size);
}

void TrainConfig::ResolveDefaults() {
  if (optimizer.momentum < 0) optimizer.momentum = optimizer.name == "sgd" ? 0.9f : 0.0f;
}

}  // namespace p2p::peer
