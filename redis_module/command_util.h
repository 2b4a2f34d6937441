// How a command answers: its body returns Result<long long>; the value becomes an integer reply,
// an error becomes "ERR <message>". Nothing may throw into Redis (C code): a stray exception is
// answered as an internal error and the server keeps running.
#pragma once

#include <exception>
#include <string>

#include "common/status.h"
#include "redis_module/redismodule_abi.h"

namespace p2p::redis_module {

inline int ReplyError(RedisModuleCtx* ctx, std::string message) {
  // A Redis error is one line.
  for (char& c : message) {
    if (c == '\r' || c == '\n') c = ' ';
  }
  return rm.ReplyWithError(ctx, ("ERR " + message).c_str());
}

template <typename Body>
int Reply(RedisModuleCtx* ctx, Body&& body) {
  try {
    Result<long long> r = body();
    if (!r.ok()) return ReplyError(ctx, r.status().message());
    rm.ReplicateVerbatim(ctx);
    return rm.ReplyWithLongLong(ctx, *r);
  } catch (const std::exception& e) {
    return ReplyError(ctx, std::string("p2ptrain module internal error: ") + e.what());
  } catch (...) {
    return ReplyError(ctx, "p2ptrain module internal error");
  }
}

}  // namespace p2p::redis_module
