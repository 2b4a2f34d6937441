// Blobs (store/blob.h) inside Redis keys, reached through the module API's zero-copy string access
// (RedisModule_StringDMA). The floats are used in place when they sit on a float boundary (every
// blob of 256 bytes or more, see store/blob.h) and copied otherwise, so the kernels never see a
// misaligned float*.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "redis_module/redismodule_abi.h"

namespace p2p::redis_module {

// A key opened for the length of one command.
class Key {
 public:
  Key(RedisModuleCtx* ctx, RedisModuleString* name, int mode);
  ~Key();
  Key(const Key&) = delete;
  Key& operator=(const Key&) = delete;
  RedisModuleKey* get() const { return key_; }
  int type() const;
  std::string_view name() const { return name_; }

 private:
  RedisModuleKey* key_;
  std::string_view name_;
};

std::string_view ArgText(const RedisModuleString* s);

// Read-only floats of a blob. `data` points into Redis or into `copy`.
struct FloatsIn {
  const float* data = nullptr;
  uint32_t count = 0;
  std::vector<float> copy;
};

// The blob in `key` ("source 'g1'" in errors: role + name). NotFound if the key does not exist,
// InvalidArgument if it holds another type or is not a valid blob.
Result<FloatsIn> ReadBlob(const Key& key, std::string_view role);
// The same for a list element (RedisModule_ListGet's copy, owned by the caller).
Result<FloatsIn> ReadBlobString(const RedisModuleString* s, std::string_view what);

// Writable floats of a blob that is (re)sized to `count` floats: in place, or a zeroed scratch
// that Commit() copies into Redis.
class FloatsOut {
 public:
  // Existing string keys are resized; an empty key is created. InvalidArgument if the key holds
  // another type. With `keep`, the existing values are kept (the key must already be a blob of
  // exactly `count` floats); otherwise they are unspecified (the caller writes all of them).
  static Result<FloatsOut> Open(const Key& key, uint32_t count, bool keep, std::string_view role);
  float* data() { return data_; }
  void Commit();

 private:
  float* data_ = nullptr;
  char* in_redis_ = nullptr;  // the floats inside Redis
  uint32_t count_ = 0;
  std::vector<float> scratch_;  // used when in_redis_ is not float-aligned
};

// Index of the first NaN or infinity, or -1.
int64_t FirstNonFinite(const float* data, size_t n);

}  // namespace p2p::redis_module
