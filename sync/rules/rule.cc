// The rule registry: names to factories, like the codecs' (sync/codecs/codec.cc). Each factory
// reads and range-checks its parameters; defaults are in docs/robustness.md.
#include "sync/rules/rule.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cmath>

#include "sync/rules/iterative.h"
#include "sync/rules/krum.h"
#include "sync/rules/mean.h"
#include "sync/rules/order_stats.h"
#include "sync/rules/rule_params.h"

namespace p2p::sync::rules {
namespace {

using Made = Result<std::unique_ptr<Rule>>;

// The largest f accepted at parse time; the run's size bounds it further (CheckCount).
constexpr double kMaxF = 1000;

template <typename R, typename... Args>
Made Make(RuleParams& p, std::string_view valid, Args... args) {
  P2P_RETURN_IF_ERROR(p.CheckAllUsed(valid));
  return std::unique_ptr<Rule>(std::make_unique<R>(args...));
}

Made MakeMean(RuleParams& p) { return Make<MeanRule>(p, ""); }
Made MakeMedian(RuleParams& p) { return Make<MedianRule>(p, ""); }

Made MakeTrimmedMean(RuleParams& p) {
  // beta < 0.5 so that at least one value is left; 0.4999... is as close as a double says.
  P2P_ASSIGN_OR_RETURN(const double beta, p.Get("beta", 0.1, 0.0, std::nextafter(0.5, 0.0)));
  return Make<TrimmedMeanRule>(p, "beta (default 0.1, < 0.5)", beta);
}

Made MakeKrum(RuleParams& p) {
  P2P_ASSIGN_OR_RETURN(const double f, p.Get("f", 1, 0, kMaxF, true));
  return Make<KrumRule>(p, "f (default 1)", static_cast<int>(f));
}

Made MakeMultiKrum(RuleParams& p) {
  P2P_ASSIGN_OR_RETURN(const double f, p.Get("f", 1, 0, kMaxF, true));
  P2P_ASSIGN_OR_RETURN(const double m, p.Get("m", 0, 0, 1e6, true));
  return Make<MultiKrumRule>(p, "f (default 1), m (default 0: n - f)", static_cast<int>(f),
                             static_cast<int>(m));
}

Made MakeBulyan(RuleParams& p) {
  P2P_ASSIGN_OR_RETURN(const double f, p.Get("f", 1, 0, kMaxF, true));
  return Make<BulyanRule>(p, "f (default 1)", static_cast<int>(f));
}

Made MakeCenteredClip(RuleParams& p) {
  P2P_ASSIGN_OR_RETURN(const double tau, p.Get("tau", 0.1, 1e-30, 1e30));
  P2P_ASSIGN_OR_RETURN(const double iters, p.Get("iters", 3, 1, 1000, true));
  return Make<CenteredClipRule>(p, "tau (default 0.1), iters (default 3)", tau,
                                static_cast<int>(iters));
}

Made MakeGeoMedian(RuleParams& p) {
  P2P_ASSIGN_OR_RETURN(const double tol, p.Get("tol", 1e-6, 0, 1));
  P2P_ASSIGN_OR_RETURN(const double iters, p.Get("iters", 100, 1, 10000, true));
  return Make<GeoMedianRule>(p, "tol (default 1e-6), iters (default 100)", tol,
                             static_cast<int>(iters));
}

struct RuleDesc {
  std::string_view name;
  Made (*make)(RuleParams&);
};

constexpr RuleDesc kRegistry[] = {
    {"mean", MakeMean},
    {"median", MakeMedian},
    {"trimmed-mean", MakeTrimmedMean},
    {"krum", MakeKrum},
    {"multi-krum", MakeMultiKrum},
    {"bulyan", MakeBulyan},
    {"centered-clip", MakeCenteredClip},
    {"geomedian", MakeGeoMedian},
};

}  // namespace

Result<std::unique_ptr<Rule>> MakeRule(std::string_view spec) {
  const size_t colon = spec.find(':');
  const std::string_view name = spec.substr(0, colon);
  for (const RuleDesc& d : kRegistry) {
    if (d.name != name) continue;
    P2P_ASSIGN_OR_RETURN(
        RuleParams params,
        RuleParams::Parse(name, colon == std::string_view::npos ? "" : spec.substr(colon + 1)));
    return d.make(params);
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
