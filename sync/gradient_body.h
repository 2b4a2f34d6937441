// The body of a GRADIENT envelope: how many samples the gradient averages over, then the values.
//   u32 samples | u32 count | count x float32, all little-endian
// (The codec issue replaces the float32 payload by a codec's bytes; the envelope's codec field
// says which.)
#pragma once

#include <cstdint>
#include <span>

#include "broker/envelope.h"
#include "common/status.h"

namespace p2p::sync {

broker::Bytes EncodeGradientBody(uint32_t samples, std::span<const float> values);
// Validates that the body holds exactly out.size() values before touching `out`; returns the
// sample count. InvalidArgument naming what was wrong otherwise.
Result<uint32_t> DecodeGradientBody(std::span<const std::byte> body, std::span<float> out);

}  // namespace p2p::sync
