// --offload: the trainer's gradient work goes to a FunctionPool (serverless_offload/), like the
// study's peers fanning minibatches out to Lambda. Adds the per-epoch offload metrics.
#pragma once

#include "common/status.h"
#include "peer/train_config.h"
#include "peer/trainer.h"

namespace p2p::peer {

// No-op for --offload none. Otherwise creates the pool and the parameter store and installs the
// trainer's gradient offload and metrics. InvalidArgument for bad flags.
Status AttachOffload(Trainer& trainer, const OffloadConfig& config);

}  // namespace p2p::peer
