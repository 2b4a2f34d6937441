// The few pieces of Redis's module ABI that p2ptrain_redis.so uses, declared here from Redis's
// documented module API (https://redis.io/docs/reference/modules/modules-api-ref/), because Debian
// ships no redismodule.h. Tested against Redis 7.0.15 (Debian 12's redis-server 7.0); the module
// needs Redis >= 7.0 (RedisModule_ListGet).
//
// How the ABI works: Redis calls RedisModule_OnLoad(ctx, argv, argc); the first word of ctx is a
// lookup function int (*)(const char* name, void* out) that fills a function pointer by name
// ("RedisModule_OpenKey"). redismodule.h's inline RedisModule_Init does exactly that for every
// API function; InitApi below does it for ours and fails if the server lacks one.
#pragma once

#include <cstddef>

extern "C" {
struct RedisModuleCtx;
struct RedisModuleKey;
struct RedisModuleString;
typedef int (*RedisModuleCmdFunc)(RedisModuleCtx* ctx, RedisModuleString** argv, int argc);
}

namespace p2p::redis_module {

// Values of REDISMODULE_* constants (stable since Redis 4).
inline constexpr int kOk = 0;   // REDISMODULE_OK
inline constexpr int kErr = 1;  // REDISMODULE_ERR
inline constexpr int kApiVersion1 = 1;
inline constexpr int kRead = 1 << 0;   // REDISMODULE_READ
inline constexpr int kWrite = 1 << 1;  // REDISMODULE_WRITE
inline constexpr int kKeyTypeEmpty = 0;
inline constexpr int kKeyTypeString = 1;
inline constexpr int kKeyTypeList = 2;

// X(return type, name, parameters) for every API function the module calls.
#define P2P_REDIS_API(X)                                                                     \
  X(int, CreateCommand,                                                                      \
    (RedisModuleCtx*, const char* name, RedisModuleCmdFunc, const char* flags, int firstkey, \
     int lastkey, int keystep))                                                              \
  X(void, SetModuleAttribs, (RedisModuleCtx*, const char* name, int ver, int apiver))        \
  X(int, IsModuleNameBusy, (const char* name))                                               \
  X(int, WrongArity, (RedisModuleCtx*))                                                      \
  X(int, ReplyWithError, (RedisModuleCtx*, const char* err))                                 \
  X(int, ReplyWithSimpleString, (RedisModuleCtx*, const char* msg))                          \
  X(int, ReplyWithLongLong, (RedisModuleCtx*, long long))                                    \
  X(const char*, StringPtrLen, (const RedisModuleString*, size_t* len))                      \
  X(int, StringToDouble, (const RedisModuleString*, double* out))                            \
  X(int, StringToLongLong, (const RedisModuleString*, long long* out))                       \
  X(RedisModuleKey*, OpenKey, (RedisModuleCtx*, RedisModuleString * name, int mode))         \
  X(void, CloseKey, (RedisModuleKey*))                                                       \
  X(int, DeleteKey, (RedisModuleKey*))                                                       \
  X(int, KeyType, (RedisModuleKey*))                                                         \
  X(size_t, ValueLength, (RedisModuleKey*))                                                  \
  X(char*, StringDMA, (RedisModuleKey*, size_t * len, int mode))                             \
  X(int, StringTruncate, (RedisModuleKey*, size_t newlen))                                   \
  X(RedisModuleString*, ListGet, (RedisModuleKey*, long index))                              \
  X(void, FreeString, (RedisModuleCtx*, RedisModuleString*))                                 \
  X(int, ReplicateVerbatim, (RedisModuleCtx*))

struct Api {
#define P2P_REDIS_API_FIELD(ret, name, params) ret(*name) params = nullptr;
  P2P_REDIS_API(P2P_REDIS_API_FIELD)
#undef P2P_REDIS_API_FIELD
};

// The functions, filled by InitApi in RedisModule_OnLoad.
extern Api rm;

// Fills `rm` through the lookup function in ctx and registers the module as `name`. kErr if the
// server lacks a function we need or the name is taken.
int InitApi(RedisModuleCtx* ctx, const char* name, int version);

}  // namespace p2p::redis_module
