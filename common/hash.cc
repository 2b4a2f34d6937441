#include "common/hash.h"

#include <fmt/format.h>

namespace p2p {

uint64_t Fnv1a64(std::span<const std::byte> bytes, uint64_t seed) {
  uint64_t h = seed;
  for (std::byte b : bytes) {
    h ^= static_cast<uint64_t>(b);
    h *= 0x100000001b3ull;
  }
  return h;
}

std::string HashFloats(std::span<const float> values) {
  return fmt::format("{:016x}", Fnv1a64(std::as_bytes(values)));
}

}  // namespace p2p
