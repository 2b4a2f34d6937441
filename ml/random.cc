#include "ml/random.h"

#include <cmath>
#include <numbers>

namespace p2p::ml {

double UniformDouble(std::mt19937_64& rng) { return static_cast<double>(rng() >> 11) * 0x1.0p-53; }

void FillNormal(std::mt19937_64& rng, float stddev, std::span<float> out) {
  for (size_t i = 0; i < out.size(); i += 2) {
    // u1 in (0, 1] so log(u1) is finite; u2 in [0, 1).
    const double u1 = static_cast<double>((rng() >> 11) + 1) * 0x1.0p-53;
    const double u2 = UniformDouble(rng);
    const double radius = std::sqrt(-2.0 * std::log(u1)) * stddev;
    const double angle = 2.0 * std::numbers::pi * u2;
    out[i] = static_cast<float>(radius * std::cos(angle));
    if (i + 1 < out.size()) out[i + 1] = static_cast<float>(radius * std::sin(angle));
  }
}

void FillUniform(std::mt19937_64& rng, float bound, std::span<float> out) {
  for (float& v : out) v = static_cast<float>((2.0 * UniformDouble(rng) - 1.0) * bound);
}

}  // namespace p2p::ml
