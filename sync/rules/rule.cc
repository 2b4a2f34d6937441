// The rule registry: names to factories, like the codecs' (sync/codecs/codec.cc).
#include "sync/rules/rule.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "sync/rules/mean.h"

namespace p2p::sync::rules {
namespace {

struct RuleDesc {
  std::string_view name;
  std::unique_ptr<Rule> (*make)();
};

constexpr RuleDesc kRegistry[] = {
    {"mean", [] { return std::unique_ptr<Rule>(std::make_unique<MeanRule>()); }},
};

}  // namespace

Result<std::unique_ptr<Rule>> MakeRule(std::string_view name) {
  for (const RuleDesc& d : kRegistry) {
    if (d.name == name) return d.make();
  }
  return InvalidArgument("unknown aggregation rule '{}'; valid: {}", name,
                         fmt::join(RuleNames(), ", "));
}

std::unique_ptr<Rule> MakeCheckedRule(std::string_view name) {
  auto rule = MakeRule(name);
  P2P_CHECK(rule.ok(), "{}", rule.status().ToString());
  return std::move(*rule);
}

std::vector<std::string> RuleNames() {
  std::vector<std::string> names;
  for (const RuleDesc& d : kRegistry) names.emplace_back(d.name);
  return names;
}

}  // namespace p2p::sync::rules
