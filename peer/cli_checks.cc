#include "peer/cli_checks.h"

#include <fmt/format.h>

#include <charconv>
#include <cmath>
#include <string>
#include <system_error>

namespace p2p::peer {
namespace {

// Upper bounds at or above this are the type's limit or a sanity cap, not worth naming unless
// the value is above them.
constexpr int64_t kIntMax = std::numeric_limits<int>::max();
constexpr double kLargeReal = 1e9;

// What a flag must be, for the error, and its short form for --help.
struct Requirement {
  std::string text, help;
};

Requirement IntRequirement(int64_t lo, int64_t hi) {
  if (hi >= kIntMax && lo == 1) return {"a positive integer", "POSITIVE"};
  if (hi >= kIntMax && lo == 0) return {"a non-negative integer", ">= 0"};
  return {fmt::format("an integer from {} to {}", lo, hi), fmt::format("{}..{}", lo, hi)};
}

Requirement RealRequirement(double lo, double hi, bool lo_inclusive) {
  if (hi >= kLargeReal && lo == 0) {
    return lo_inclusive ? Requirement{"a non-negative number", ">= 0"}
                        : Requirement{"a positive number", "> 0"};
  }
  if (lo_inclusive)
    return {fmt::format("a number from {} to {}", lo, hi), fmt::format("{}..{}", lo, hi)};
  return {fmt::format("a number above {} and at most {}", lo, hi), fmt::format("({}, {}]", lo, hi)};
}

// The error for a value outside the range; names the upper bound when the requirement does not.
std::string OutOfRange(const Requirement& need, bool above_unnamed_max, const std::string& max,
                       const std::string& text) {
  if (above_unnamed_max)
    return fmt::format("must be {} no larger than {}, got {}", need.text, max, text);
  return fmt::format("must be {}, got {}", need.text, text);
}

bool ParsedWhole(const std::string& text, const char* end, std::errc ec) {
  return ec == std::errc() && !text.empty() && end == text.data() + text.size();
}

}  // namespace

CLI::Validator IntIn(int64_t lo, int64_t hi) {
  const Requirement need = IntRequirement(lo, hi);
  auto check = [lo, hi, need](std::string& text) -> std::string {
    int64_t v = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
    const bool whole_number = end == text.data() + text.size() && !text.empty();
    if (whole_number && ec == std::errc::result_out_of_range) {
      return OutOfRange(need, text[0] != '-' && hi >= kIntMax, std::to_string(hi), text);
    }
    if (!ParsedWhole(text, end, ec)) return fmt::format("must be {}, got '{}'", need.text, text);
    if (v < lo || v > hi)
      return OutOfRange(need, v > hi && hi >= kIntMax, std::to_string(hi), text);
    text = std::to_string(v);  // canonical decimal: CLI11 would read "010" as octal 8
    return {};
  };
  return CLI::Validator(check, need.help);
}

CLI::Validator Unsigned64() {
  auto check = [](std::string& text) -> std::string {
    uint64_t v = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
    if (!ParsedWhole(text, end, ec)) {
      return fmt::format("must be an integer from 0 to {}, got '{}'",
                         std::numeric_limits<uint64_t>::max(), text);
    }
    text = std::to_string(v);
    return {};
  };
  return CLI::Validator(check, ">= 0");
}

CLI::Validator RealIn(double lo, double hi, bool lo_inclusive) {
  const Requirement need = RealRequirement(lo, hi, lo_inclusive);
  auto check = [lo, hi, lo_inclusive, need](std::string& text) -> std::string {
    double v = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
    if (!ParsedWhole(text, end, ec) || !std::isfinite(v)) {
      return fmt::format("must be {}, got '{}'", need.text, text);
    }
    if (v < lo || (v == lo && !lo_inclusive) || v > hi) {
      return OutOfRange(need, v > hi && hi >= kLargeReal, fmt::format("{}", hi), text);
    }
    return {};
  };
  return CLI::Validator(check, need.help);
}

}  // namespace p2p::peer
