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

// The "none" body (no validation of the values): reduce-scatter-average's raw slices.
broker::Bytes EncodeGradientBody(uint32_t samples, std::span<const float> values);
// The body with `encoder`'s codec, into `out` (replaced): the header, then the encoder's payload
// of `grad` (error feedback applies only when samples > 0: a gradient without weight must not
// consume the residual). Errors are the encoder's (InvalidArgument for non-finite values).
Status EncodeGradientBody(codecs::GradientEncoder& encoder, uint32_t samples,
                          std::span<const float> grad, uint64_t seed, broker::Bytes& out);
// The codec payload inside a body produced here (what GradientEncoder::DecodeOwn takes back).
std::span<const std::byte> GradientPayload(std::span<const std::byte> body);
// Validates that the body holds exactly out.size() finite values before using them; returns the
// sample count. InvalidArgument for a count that differs from out.size(), DataLoss for anything
// else malformed.
Result<uint32_t> DecodeGradientBody(std::span<const std::byte> body, std::span<float> out);
// The same with any codec: the payload must be exactly one valid payload of `codec` for
// out.size() values.
Result<uint32_t> DecodeGradientBody(const codecs::Codec& codec, std::span<const std::byte> body,
                                    std::span<float> out);

}  // namespace p2p::sync
