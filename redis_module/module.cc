// p2ptrain_redis.so: SPIRT's in-database averaging and model update as Redis commands
// (docs/spirt.md). Load with `redis-server --loadmodule /path/to/p2ptrain_redis.so`.
#include "redis_module/commands.h"
#include "redis_module/redismodule_abi.h"

namespace {

constexpr int kModuleVersion = 1;

struct CommandSpec {
  const char* name;
  RedisModuleCmdFunc fn;
  // Key positions for Redis' key extraction (ACLs, cluster): the first and last key argument.
  int first_key, last_key;
};

}  // namespace

extern "C" __attribute__((visibility("default"))) int RedisModule_OnLoad(RedisModuleCtx* ctx,
                                                                         RedisModuleString**, int) {
  using namespace p2p::redis_module;
  if (InitApi(ctx, "p2ptrain", kModuleVersion) != kOk) return kErr;
  // P2P.AVG's sources are argv[2..] up to WEIGHTS; Redis' static key spec cannot stop there, so
  // only dst and the first source are declared. Outside Redis Cluster this only matters to ACLs.
  const CommandSpec commands[] = {
      {"p2p.avg", AvgCommand, 1, 2},
      {"p2p.lavg", LavgCommand, 1, 2},
      {"p2p.update", UpdateCommand, 1, 2},
  };
  for (const CommandSpec& c : commands) {
    if (rm.CreateCommand(ctx, c.name, c.fn, "write deny-oom", c.first_key, c.last_key, 1) != kOk) {
      return kErr;
    }
  }
  return kOk;
}
