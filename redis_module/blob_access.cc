#include "redis_module/blob_access.h"

#include <cstring>

#include "store/blob.h"

namespace p2p::redis_module {
namespace {

bool FloatAligned(const void* p) { return reinterpret_cast<uintptr_t>(p) % alignof(float) == 0; }

Result<FloatsIn> FromBytes(std::string_view bytes, std::string_view what) {
  Result<uint32_t> count = store::ParseBlobHeader(bytes);
  if (!count.ok()) return count.status().Annotate(what);
  FloatsIn in;
  in.count = *count;
  const char* floats = bytes.data() + store::kBlobHeaderBytes;
  if (FloatAligned(floats)) {
    in.data = reinterpret_cast<const float*>(floats);
  } else {
    in.copy.resize(in.count);
    std::memcpy(in.copy.data(), floats, in.count * sizeof(float));
    in.data = in.copy.data();
  }
  return in;
}

const char* TypeName(int type) {
  switch (type) {
    case kKeyTypeString:
      return "a string";
    case kKeyTypeList:
      return "a list";
    default:
      return "a non-string value";
  }
}

}  // namespace

Key::Key(RedisModuleCtx* ctx, RedisModuleString* name, int mode)
    : key_(rm.OpenKey(ctx, name, mode)), name_(ArgText(name)) {}

Key::~Key() {
  if (key_ != nullptr) rm.CloseKey(key_);
}

int Key::type() const { return key_ == nullptr ? kKeyTypeEmpty : rm.KeyType(key_); }

std::string_view ArgText(const RedisModuleString* s) {
  size_t len = 0;
  const char* p = rm.StringPtrLen(s, &len);
  return {p, len};
}

Result<FloatsIn> ReadBlob(const Key& key, std::string_view role) {
  const std::string what = fmt::format("{} '{}'", role, key.name());
  const int type = key.type();
  if (type == kKeyTypeEmpty) return NotFound("{} does not exist", what);
  if (type != kKeyTypeString)
    return InvalidArgument("{} holds {}, not a blob", what, TypeName(type));
  size_t len = 0;
  const char* bytes = rm.StringDMA(key.get(), &len, kRead);
  if (bytes == nullptr) return InvalidArgument("{} cannot be read as a string", what);
  return FromBytes({bytes, len}, what);
}

Result<FloatsIn> ReadBlobString(const RedisModuleString* s, std::string_view what) {
  return FromBytes(ArgText(s), what);
}

Result<FloatsOut> FloatsOut::Open(const Key& key, uint32_t count, bool keep,
                                  std::string_view role) {
  const std::string what = fmt::format("{} '{}'", role, key.name());
  const int type = key.type();
  if (type != kKeyTypeEmpty && type != kKeyTypeString) {
    return InvalidArgument("{} holds {}, not a blob; DEL it or use another key", what,
                           TypeName(type));
  }
  const size_t bytes = store::kBlobHeaderBytes + size_t{count} * sizeof(float);
  if (keep) {
    P2P_ASSIGN_OR_RETURN(FloatsIn current, ReadBlob(key, role));
    if (current.count != count) {
      return InvalidArgument("{} holds {} floats, expected {}", what, current.count, count);
    }
  } else if (rm.StringTruncate(key.get(), bytes) != kOk) {
    return InvalidArgument("{} cannot be resized to {} bytes", what, bytes);
  }
  size_t len = 0;
  char* dma = rm.StringDMA(key.get(), &len, kWrite);
  if (dma == nullptr || len != bytes) return Internal("{}: no writable access", what);
  store::WriteBlobHeader(count, dma);
  FloatsOut out;
  out.count_ = count;
  out.in_redis_ = dma + store::kBlobHeaderBytes;
  if (FloatAligned(out.in_redis_)) {
    out.data_ = reinterpret_cast<float*>(out.in_redis_);
  } else {
    out.scratch_.resize(count);
    if (keep) std::memcpy(out.scratch_.data(), out.in_redis_, count * sizeof(float));
    out.data_ = out.scratch_.data();
  }
  return out;
}

void FloatsOut::Commit() {
  if (data_ != reinterpret_cast<float*>(in_redis_) && count_ > 0) {
    std::memcpy(in_redis_, scratch_.data(), count_ * sizeof(float));
  }
}

int64_t FirstNonFinite(const float* data, size_t n) {
  // Exponent bits all ones: infinity or NaN. An integer test so the loop vectorises.
  uint32_t any = 0;
  for (size_t i = 0; i < n; ++i) {
    uint32_t bits;
    std::memcpy(&bits, data + i, sizeof bits);
    any |= static_cast<uint32_t>((bits & 0x7f800000u) == 0x7f800000u);
  }
  if (any == 0) return -1;
  for (size_t i = 0; i < n; ++i) {
    uint32_t bits;
    std::memcpy(&bits, data + i, sizeof bits);
    if ((bits & 0x7f800000u) == 0x7f800000u) return static_cast<int64_t>(i);
  }
  return -1;
}

}  // namespace p2p::redis_module
