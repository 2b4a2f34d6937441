#include "redis_module/redismodule_abi.h"

namespace p2p::redis_module {

Api rm;

int InitApi(RedisModuleCtx* ctx, const char* name, int version) {
  using GetApi = int (*)(const char* name, void* out);
  auto get_api = reinterpret_cast<GetApi>((reinterpret_cast<void**>(ctx))[0]);
  bool all = true;
#define P2P_REDIS_API_GET(ret, fn, params) \
  all = get_api("RedisModule_" #fn, static_cast<void*>(&rm.fn)) == kOk && rm.fn != nullptr && all;
  P2P_REDIS_API(P2P_REDIS_API_GET)
#undef P2P_REDIS_API_GET
  if (!all) return kErr;
  if (rm.IsModuleNameBusy(name)) return kErr;
  rm.SetModuleAttribs(ctx, name, version, kApiVersion1);
  return kOk;
}

}  // namespace p2p::redis_module
