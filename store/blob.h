// The float32 blob: how parameters, gradients and optimizer state are stored in Redis.
//
//   offset 0  4 bytes  magic "P2PF"
//          4  1 byte   version (1)
//          5  2 bytes  reserved, zero
//          7  4 bytes  count: number of floats, uint32 little-endian
//         11  4*count  the floats, IEEE-754 binary32 little-endian
//
// The header is 11 bytes on purpose: Redis keeps a string behind a 5-, 9- or 17-byte sds header
// in a 16-byte-aligned allocation for every blob of 256 bytes or more, so 11 puts the floats on a
// 4-byte boundary there and the module can work on them in place (it checks, and copies when not).
// Shared by the client (store/) and the Redis module (redis_module/ compiles this file too).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace p2p::store {

inline constexpr size_t kBlobHeaderBytes = 11;
inline constexpr uint8_t kBlobVersion = 1;
// Redis refuses bulk strings over 512 MiB by default (proto-max-bulk-len); no blob may be bigger.
inline constexpr uint32_t kMaxBlobFloats = (512u << 20) / 4 - 4;

// Checks magic, version, reserved bytes, the count bound and that the size is exactly header +
// 4 * count; returns count. InvalidArgument/DataLoss naming what is wrong ("not a p2ptrain blob:
// bad magic", "blob says 10 floats but holds 36 bytes of data").
Result<uint32_t> ParseBlobHeader(std::string_view blob);

// Writes the 11-byte header for `count` floats to `out`.
void WriteBlobHeader(uint32_t count, char* out);

// Header + values. P2P_CHECK: values.size() <= kMaxBlobFloats.
std::string EncodeBlob(std::span<const float> values);

// The values of a valid blob (ParseBlobHeader's errors otherwise).
Result<std::vector<float>> DecodeBlob(std::string_view blob);

}  // namespace p2p::store
