// --offload: the trainer's gradient work goes to a FunctionPool (serverless_offload/), like the
// study's peers fanning minibatches out to Lambda. Adds the per-epoch offload metrics.
#pragma once

#include <functional>
#include <optional>
#include <utility>
#include <vector>

#include "common/status.h"
#include "peer/train_config.h"
#include "peer/trainer.h"
#include "serverless_offload/task.h"

namespace p2p::peer {

// SPIRT's store path (docs/spirt.md): the functions read the parameters from the peer's database
// and write their gradients into it. `begin_round(tasks)` prepares the round's list and returns
// where the functions go (Task::Store without its index) and the parameter version;
// `pushed(samples)` reports the tasks' sample counts once all of them wrote their slots.
struct OffloadStore {
  std::function<Result<std::pair<offload::Task::Store, uint64_t>>(size_t tasks)> begin_round;
  std::function<void(std::vector<uint64_t> samples)> pushed;
};

// No-op for --offload none. Otherwise creates the pool and the parameter store and installs the
// trainer's gradient offload and metrics. InvalidArgument for bad flags.
// With `store`, the functions use the store path (--offload process only: the task carries the
// database's password, which must not cross a broker).
Status AttachOffload(Trainer& trainer, const OffloadConfig& config,
                     std::optional<OffloadStore> store = std::nullopt);

}  // namespace p2p::peer
