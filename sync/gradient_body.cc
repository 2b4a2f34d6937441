#include "sync/gradient_body.h"

#include <bit>
#include <cstring>

#include "common/byte_pool.h"

namespace p2p::sync {
namespace {
static_assert(std::endian::native == std::endian::little,
              "the wire format is little-endian; add byte swapping for big-endian hosts");
constexpr size_t kHeader = kGradientBodyHeader + 4;  // samples and the payload's count

const codecs::Codec& NoneCodec() {
  static const auto codec = codecs::MakeCodec({"none", {}});
  return **codec;
}
}  // namespace

broker::Bytes EncodeGradientBody(uint32_t samples, std::span<const float> values) {
  // From the BytePool and appended, not zero-filled first: one pass over the values.
  broker::Bytes body = BytePool::Global().Take(kHeader + values.size_bytes());
  const auto count = static_cast<uint32_t>(values.size());
  const auto append = [&body](const void* p, size_t n) {
    const auto* b = static_cast<const std::byte*>(p);
    body.insert(body.end(), b, b + n);
  };
  append(&samples, 4);
  append(&count, 4);
  append(values.data(), values.size_bytes());
  return body;
}

Status EncodeGradientBody(codecs::GradientEncoder& encoder, uint32_t samples,
                          std::span<const float> grad, uint64_t seed, broker::Bytes& out) {
  out.assign(kGradientBodyHeader, std::byte{0});
  std::memcpy(out.data(), &samples, 4);
  return encoder.Encode(grad, seed, /*feedback=*/samples > 0, out);
}

std::span<const std::byte> GradientPayload(std::span<const std::byte> body) {
  P2P_CHECK(body.size() >= kGradientBodyHeader, "a gradient body of {} bytes", body.size());
  return body.subspan(kGradientBodyHeader);
}

Result<uint32_t> DecodeGradientBody(std::span<const std::byte> body, std::span<float> out) {
  return DecodeGradientBody(NoneCodec(), body, out);
}

Result<uint32_t> DecodeGradientBody(const codecs::Codec& codec, std::span<const std::byte> body,
                                    std::span<float> out) {
  if (body.size() < kHeader) {
    return InvalidArgument("gradient body of {} bytes is shorter than its {}-byte header",
                           body.size(), kHeader);
  }
  uint32_t samples = 0, count = 0;
  std::memcpy(&samples, body.data(), 4);
  std::memcpy(&count, body.data() + 4, 4);
  if (count != out.size()) {
    return InvalidArgument("gradient has {} values but this model has {} parameters", count,
                           out.size());
  }
  P2P_RETURN_IF_ERROR(codec.Decode(body.subspan(kGradientBodyHeader), out));
  return samples;
}

}  // namespace p2p::sync
