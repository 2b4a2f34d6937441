// The `process` backend: every invocation is a fresh `p2ptrain function` process (a cold start,
// like a new Lambda container) unless --fn-warm keeps finished processes for the next task.
// One poll() loop watches every running invocation's pipes and pidfd, with the nearest timeout as
// its only wake-up: no sleeps, no polling loops.
#pragma once

#include <memory>

#include "serverless_offload/pool.h"

namespace p2p::offload {

std::unique_ptr<FunctionPool> MakeProcessPool(const PoolOptions& options);

}  // namespace p2p::offload
