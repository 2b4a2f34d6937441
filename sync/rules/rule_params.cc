#include "sync/rules/rule_params.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <cmath>

namespace p2p::sync::rules {

Result<RuleParams> RuleParams::Parse(std::string_view rule, std::string_view text) {
  RuleParams params;
  params.rule_ = std::string(rule);
  if (text.empty()) return params;
  while (true) {
    const size_t comma = text.find(',');
    const std::string_view item = text.substr(0, comma);
    const size_t eq = item.find('=');
    if (eq == std::string_view::npos || eq == 0 || eq + 1 == item.size()) {
      return InvalidArgument("aggregation rule '{}': '{}' is not key=value (e.g. krum:f=1)", rule,
                             item);
    }
    const std::string_view key = item.substr(0, eq), value = item.substr(eq + 1);
    double v = 0;
    const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), v);
    if (ec != std::errc() || end != value.data() + value.size() || !std::isfinite(v)) {
      return InvalidArgument("aggregation rule '{}': {}='{}' is not a number", rule, key, value);
    }
    if (!params.values_.emplace(std::string(key), v).second) {
      return InvalidArgument("aggregation rule '{}': parameter '{}' is given twice", rule, key);
    }
    if (comma == std::string_view::npos) break;
    text = text.substr(comma + 1);
  }
  return params;
}

Result<double> RuleParams::Get(std::string_view key, double fallback, double lo, double hi,
                               bool integer) {
  used_.emplace_back(key);
  const auto it = values_.find(key);
  const double v = it == values_.end() ? fallback : it->second;
  if (v < lo || v > hi || (integer && v != std::floor(v))) {
    return InvalidArgument("aggregation rule '{}': {}={} must be {} in [{}, {}]", rule_, key,
                           FormatParam(v), integer ? "an integer" : "a number", FormatParam(lo),
                           FormatParam(hi));
  }
  return v;
}

Status RuleParams::CheckAllUsed(std::string_view valid) const {
  for (const auto& [key, v] : values_) {
    if (std::find(used_.begin(), used_.end(), key) == used_.end()) {
      return InvalidArgument("aggregation rule '{}' has no parameter '{}' (its parameters: {})",
                             rule_, key, valid.empty() ? "none" : valid);
    }
  }
  return Status::Ok();
}

std::string FormatParam(double v) {
  char buf[32];
  const auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), v);
  return std::string(buf, end);
}

Result<std::vector<size_t>> Participants(std::string_view rule, std::span<const Input> inputs,
                                         size_t size) {
  std::vector<size_t> with_samples;
  for (size_t r = 0; r < inputs.size(); ++r) {
    const std::span<const float> g = inputs[r].grad;
    if (g.size() != size) {
      return InvalidArgument("input {} of {} has {} values, expected {}", r, rule, g.size(), size);
    }
    for (size_t i = 0; i < g.size(); ++i) {
      if (!std::isfinite(g[i])) {
        // Corrupt data, not a usage mistake: exit 1 like the decoders' refusal, never 2.
        return DataLoss("input {} of {} holds a non-finite value ({}) at index {}", r, rule, g[i],
                        i);
      }
    }
    if (inputs[r].samples > 0) with_samples.push_back(r);
  }
  if (with_samples.empty()) return InvalidArgument("no input of {} has samples", rule);
  return with_samples;
}

double SquaredDistance(std::span<const float> a, std::span<const float> b) {
  double s[4] = {0, 0, 0, 0};
  const size_t n = a.size(), body = n - n % 4;
  for (size_t i = 0; i < body; i += 4) {
    for (size_t k = 0; k < 4; ++k) {
      const double d = static_cast<double>(a[i + k]) - static_cast<double>(b[i + k]);
      s[k] += d * d;
    }
  }
  for (size_t i = body; i < n; ++i) {
    const double d = static_cast<double>(a[i]) - static_cast<double>(b[i]);
    s[i - body] += d * d;
  }
  return (s[0] + s[1]) + (s[2] + s[3]);
}

}  // namespace p2p::sync::rules
