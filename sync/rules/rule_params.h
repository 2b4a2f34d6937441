// What the robust rules share: their "name:key=value" parameters and the checks every Aggregate
// starts with.
#pragma once

#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "sync/rules/rule.h"

namespace p2p::sync::rules {

// A rule's parameters as given ("krum:f=1" -> {"f": 1}). Values are finite numbers.
class RuleParams {
 public:
  // Parses the part after the colon ("" for none). Errors name the rule and the bad item.
  static Result<RuleParams> Parse(std::string_view rule, std::string_view text);

  // The value of `key` (or `fallback` when absent), which must lie in [lo, hi] (an integer when
  // `integer`); InvalidArgument naming the rule, the parameter and the range otherwise.
  Result<double> Get(std::string_view key, double fallback, double lo, double hi,
                     bool integer = false);
  // InvalidArgument naming the first parameter no Get asked for (a typo must not be ignored),
  // listing the rule's parameters.
  Status CheckAllUsed(std::string_view valid) const;

 private:
  std::string rule_;
  std::map<std::string, double, std::less<>> values_;
  std::vector<std::string> used_;
};

// "0.2" not "0.200000": the shortest text that reads back as the same double.
std::string FormatParam(double v);

// Checks what every robust rule needs of its inputs: each of out.size() finite values, and at
// least one with samples. Returns the indices of the inputs with samples, in rank order (inputs
// without samples carry no gradient this round and are left out).
Result<std::vector<size_t>> Participants(std::string_view rule, std::span<const Input> inputs,
                                         size_t size);

// A total order on finite floats as unsigned integers (-0 sorts below +0), so sorting gives the
// same sequence of bits whatever the algorithm does with ties.
inline uint32_t OrderKey(float v) {
  uint32_t u;
  static_assert(sizeof(u) == sizeof(v));
  __builtin_memcpy(&u, &v, 4);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}
inline float FromOrderKey(uint32_t k) {
  const uint32_t u = (k & 0x80000000u) ? (k & 0x7fffffffu) : ~k;
  float v;
  __builtin_memcpy(&v, &u, 4);
  return v;
}

// Squared Euclidean distance in double with a fixed 4-way split of the sum: the same bits on
// every peer (no data- or thread-dependent order) and no overflow for values up to 1e38.
double SquaredDistance(std::span<const float> a, std::span<const float> b);

}  // namespace p2p::sync::rules
