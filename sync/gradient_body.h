// The body of a GRADIENT envelope: how many samples the gradient averages over, then the gradient
// as a codec payload (sync/codecs/codec.h; the envelope's codec field names the codec):
//   u32 samples | codec payload, which starts with u32 count
// With the "none" codec the payload is count x float32, so a "none" body is
//   u32 samples | u32 count | count x float32, all little-endian.
#pragma once

#include <cstdint>
#include <span>

#include "broker/envelope.h"
#include "common/status.h"
#include "sync/codecs/codec.h"

namespace p2p::sync {

inline constexpr size_t kGradientBodyHeader = 4;  // u32 samples before the payload

// The "none" body (no validation of the values; for tests and benchmarks).
broker::Bytes EncodeGradientBody(uint32_t samples, std::span<const float> values);
// Validates that the body holds exactly out.size() finite values before using them; returns the
// sample count. InvalidArgument for a count that differs from out.size(), DataLoss for anything
// else malformed.
Result<uint32_t> DecodeGradientBody(std::span<const std::byte> body, std::span<float> out);
// The same with any codec: the payload must be exactly one valid payload of `codec` for
// out.size() values.
Result<uint32_t> DecodeGradientBody(const codecs::Codec& codec, std::span<const std::byte> body,
                                    std::span<float> out);

}  // namespace p2p::sync
