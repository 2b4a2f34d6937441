// Refusing a model this process cannot hold, before allocating it: `--hidden 1000000,1000000`
// used to end in "critical internal error: std::bad_alloc" (or in the kernel's OOM killer).
#pragma once

#include <cstdint>
#include <optional>

#include "common/status.h"
#include "ml/model.h"
#include "ml/optimizer.h"

namespace p2p::peer {

// Parameter-sized float buffers the optimizer keeps (ml::Optimizer::State lists them): sgd 1 with
// momentum, adam/adamw 2, rmsprop 1 (+1 with momentum), adagrad 1.
int OptimizerStateBuffers(const ml::OptimizerOptions& optimizer);

// Bytes this process may still allocate: the smaller of MemAvailable (/proc/meminfo) and what an
// address-space limit (RLIMIT_AS) leaves above the current mapping size. Nothing if neither can be
// read.
std::optional<uint64_t> AvailableMemoryBytes();

// The least a training process needs for the model: parameters, gradients and optimizer state,
// 4 bytes per value. Refuses (kInvalidArgument) a model over ml::Model::kMaxParams and
// (kUnavailable) one whose need exceeds `available`, naming the parameter count, the bytes needed
// and the bytes available.
Status CheckModelFitsMemory(const ml::ModelOptions& model, const ml::OptimizerOptions& optimizer,
                            std::optional<uint64_t> available);

}  // namespace p2p::peer
