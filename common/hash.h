// Content hashes for agreement checks (not for security: crypto/ owns that).
#pragma once

#include <cstdint>
#include <span>
#include <string>

namespace p2p {

// 64-bit FNV-1a over raw bytes; `seed` chains several buffers into one hash.
uint64_t Fnv1a64(std::span<const std::byte> bytes, uint64_t seed = 0xcbf29ce484222325ull);
// Hash of a float buffer's exact bits, as 16 hex digits: two peers print the same string iff
// their parameters are bitwise identical (barring a 2^-64 collision).
std::string HashFloats(std::span<const float> values);

}  // namespace p2p
