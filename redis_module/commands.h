// The module's commands (docs/spirt.md has their full syntax). Each validates its arguments and
// every blob before it writes anything, and answers a Redis error naming the problem.
#pragma once

#include "redis_module/redismodule_abi.h"

namespace p2p::redis_module {

// P2P.AVG dst src [src ...] [WEIGHTS w ...]: the sample-weighted mean of the source blobs.
int AvgCommand(RedisModuleCtx* ctx, RedisModuleString** argv, int argc);
// P2P.LAVG dst listkey [WEIGHTS w ...]: the same over the blobs in a list.
int LavgCommand(RedisModuleCtx* ctx, RedisModuleString** argv, int argc);
// P2P.UPDATE params grad STATE statekey OPT sgd|adam|adamw LR lr [MOMENTUM m] [NESTEROV] [WD wd]
//            [BETAS b1 b2] [EPS e] [STEP t]: one optimizer step on params, in place.
int UpdateCommand(RedisModuleCtx* ctx, RedisModuleString** argv, int argc);

}  // namespace p2p::redis_module
