// CLI11 validators for numeric flags whose errors say what the flag needs and what it got.
//
// CLI11's own PositiveNumber and NonNegativeNumber check against the range of a double, so
// `--batch_size 0` printed "Value 0 not in range 0.000000 to 1797...(309 digits)"; its Range
// prints floats with six decimals. These read "--batch_size: must be a positive integer, got 0".
// Each validator also refuses what the flag's C++ type cannot hold (so CLI11's conversion never
// fails with its own message, and "-1" never wraps around into an unsigned seed).
//
// Attach them with Option::transform, not check: the integer validators rewrite the text as plain
// decimal, because CLI11 converts integers with base 0 ("010" would be octal 8, "0x10" 16), and
// only a transform's rewrite reaches the conversion.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <limits>

namespace p2p::peer {

// An integer in [lo, hi]. The message names "positive"/"non-negative" when the range is that.
CLI::Validator IntIn(int64_t lo, int64_t hi);
inline CLI::Validator PositiveInt(int64_t hi = std::numeric_limits<int>::max()) {
  return IntIn(1, hi);
}
inline CLI::Validator NonNegativeInt(int64_t hi = std::numeric_limits<int>::max()) {
  return IntIn(0, hi);
}
// A decimal integer in [0, 2^64-1] (seeds): "-1" is refused instead of wrapping.
CLI::Validator Unsigned64();

// A finite real number x with lo < x (or lo <= x when lo_inclusive) and x <= hi.
CLI::Validator RealIn(double lo, double hi, bool lo_inclusive);
inline CLI::Validator PositiveReal(double hi = 1e9) { return RealIn(0, hi, false); }
inline CLI::Validator NonNegativeReal(double hi = 1e9) { return RealIn(0, hi, true); }

}  // namespace p2p::peer
