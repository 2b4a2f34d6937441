#include "sync/gradient_body.h"

#include <bit>
#include <cstring>

namespace p2p::sync {
namespace {
static_assert(std::endian::native == std::endian::little,
              "the wire format is little-endian; add byte swapping for big-endian hosts");
constexpr size_t kHeader = 8;
}  // namespace

broker::Bytes EncodeGradientBody(uint32_t samples, std::span<const float> values) {
  broker::Bytes body(kHeader + values.size_bytes());
  const auto count = static_cast<uint32_t>(values.size());
  std::memcpy(body.data(), &samples, 4);
  std::memcpy(body.data() + 4, &count, 4);
  std::memcpy(body.data() + kHeader, values.data(), values.size_bytes());
  return body;
}

Result<uint32_t> DecodeGradientBody(std::span<const std::byte> body, std::span<float> out) {
  if (body.size() < kHeader) {
    return InvalidArgument("gradient body of {} bytes is shorter than its 8-byte header",
                           body.size());
  }
  uint32_t samples = 0, count = 0;
  std::memcpy(&samples, body.data(), 4);
  std::memcpy(&count, body.data() + 4, 4);
  if (count != out.size()) {
    return InvalidArgument("gradient has {} values but this model has {} parameters", count,
                           out.size());
  }
  if (body.size() - kHeader != out.size_bytes()) {
    return InvalidArgument("gradient body holds {} bytes of values, expected {}",
                           body.size() - kHeader, out.size_bytes());
  }
  std::memcpy(out.data(), body.data() + kHeader, out.size_bytes());
  return samples;
}

}  // namespace p2p::sync
