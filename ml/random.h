// Portable random sampling: the same seed gives the same bits on every peer and platform.
//
// std::normal_distribution and std::uniform_real_distribution are implementation-defined, so
// peers built against different standard libraries would start from different weights. These
// helpers use only the raw 64-bit outputs of std::mt19937_64 (fully specified by the standard).
#pragma once

#include <cstdint>
#include <random>
#include <span>

namespace p2p::ml {

// Uniform double in [0, 1) from the top 53 bits of one draw.
double UniformDouble(std::mt19937_64& rng);

// Fills `out` with N(0, stddev^2) samples by Box-Muller, two samples per pair of draws (an odd
// tail consumes a full pair). Computed in double and rounded once to float; the only
// platform-dependent step is libm's log/cos/sin in the last double ulp, which changes a float
// result with probability ~1e-9 per value.
void FillNormal(std::mt19937_64& rng, float stddev, std::span<float> out);

// Fills `out` with U(-bound, bound) samples, one draw each (PyTorch's default Linear/Conv init).
void FillUniform(std::mt19937_64& rng, float bound, std::span<float> out);

}  // namespace p2p::ml
