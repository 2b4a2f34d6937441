// The body of an mlless update (sync/mlless.h): the coordinates of one peer's accumulated
// gradient that passed the significance filter this round, as (index, value) pairs, or — when
// that is smaller — all P values. Little-endian:
//   u32 samples | u32 P | u8 form | form 0 (sparse): u32 n | n x u32 index | n x f32 value
//                                 | form 1 (dense):  P x f32 value
// Indices are strictly ascending and below P; values are finite. The envelope's codec id is
// "mlless" with no parameters.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "broker/envelope.h"
#include "common/status.h"

namespace p2p::sync {

inline constexpr char kMllessCodecId[] = "mlless";

// One peer's published update: value[i] for coordinate index[i] (all coordinates when dense).
struct MllessUpdate {
  uint32_t samples = 0;  // samples behind this round's gradient (0: none this round)
  std::vector<uint32_t> index;
  std::vector<float> value;
};

// Sparse or dense, whichever is smaller, for a vector of `p` coordinates.
broker::Bytes EncodeMllessBody(const MllessUpdate& update, size_t p);
// Validates everything (P equal to `p`, sizes exact, indices ascending and below p, values
// finite) before allocating or using any of it; DataLoss for a malformed body, InvalidArgument
// for a P that is not this model's. A dense body comes back with all p indices.
Result<MllessUpdate> DecodeMllessBody(std::span<const std::byte> body, size_t p);

}  // namespace p2p::sync
