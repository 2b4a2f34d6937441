// The framing shared by every offload message (tasks, results, parameter requests and replies):
//   8-byte magic | u32 header_len | header JSON | binary body
// little-endian. Helpers to build a frame and to read its header from untrusted bytes with
// every length bounded before anything is allocated.
#pragma once

#include <cstdint>
#include <cstring>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "common/status.h"

namespace p2p::offload::wire {

using Magic = char[8];
constexpr uint32_t kMaxHeaderBytes = 64 << 10;
constexpr uint64_t kMaxFloats = uint64_t{1} << 28;  // 1 GiB of features, gradient or parameters

// One magic per message kind (task.h, remote_wire.h).
inline constexpr Magic kTaskMagic = {'P', '2', 'P', 'T', 'A', 'S', 'K', '1'};
inline constexpr Magic kResultMagic = {'P', '2', 'P', 'R', 'S', 'L', 'T', '1'};
inline constexpr Magic kParamsRequestMagic = {'P', '2', 'P', 'P', 'R', 'E', 'Q', '1'};
inline constexpr Magic kParamsReplyMagic = {'P', '2', 'P', 'P', 'A', 'R', 'M', '1'};

template <typename T>
void Put(std::string& out, T v) {
  out.append(reinterpret_cast<const char*>(&v), sizeof(T));
}

template <typename T>
T Peek(std::string_view b, size_t pos) {
  T v;
  std::memcpy(&v, b.data() + pos, sizeof(T));
  return v;
}

// Magic, header length and header; the caller appends the body.
std::string Frame(const Magic& magic, const nlohmann::json& header);

// True if `bytes` starts with `magic`.
bool HasMagic(std::string_view bytes, const Magic& magic);

// The header of a frame at the front of `buffer` and the offset of its body; nullopt if the
// header is not complete yet. DataLoss on a wrong magic, an oversized or non-object header.
using Header = std::pair<nlohmann::json, size_t>;
Result<std::optional<Header>> TakeHeader(std::string_view buffer, const Magic& magic,
                                         const char* what);

// A header field of the given type; DataLoss naming it when missing or of another type.
template <typename T>
Result<T> Field(const nlohmann::json& j, const char* key, const char* what) {
  try {
    return j.at(key).get<T>();
  } catch (const nlohmann::json::exception&) {
    return DataLoss("{}: header field '{}' is missing or has the wrong type", what, key);
  }
}

// An optional field: `fallback` when absent, DataLoss when present with another type.
template <typename T>
Result<T> OptionalField(const nlohmann::json& j, const char* key, T fallback, const char* what) {
  if (!j.contains(key)) return fallback;
  return Field<T>(j, key, what);
}

}  // namespace p2p::offload::wire
