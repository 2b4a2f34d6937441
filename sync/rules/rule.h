// Aggregation rules: how the W decoded gradients of one round become the gradient every peer
// applies. This is the seam for robust aggregation (rules that bound what a Byzantine peer can do
// to the update). The registry holds `mean`, the sample-weighted mean (sync/rules/mean.h), and
// the robust rules of docs/robustness.md: median and trimmed-mean (order_stats.h), krum,
// multi-krum and bulyan (krum.h), centered-clip (centered_clip.h) and geomedian (geomedian.h).
//
// Non-finite values: the strategies never hand a rule one (every codec's decoder refuses NaN,
// infinities and magnitudes above 1e38, failing the round with an error naming the sender). The
// robust rules check anyway and return InvalidArgument naming the input; `mean` does not look (it
// is the hot path and its bits must stay those of the code it replaced).
//
// A rule must be deterministic arithmetic: the same inputs in the same order give the same bits
// on every peer (the peers compare param_hash every epoch). So: no reductions whose order depends
// on threads or heap layout, no randomness except what is derived from the inputs, and no FMA
// contraction (the build passes -ffp-contract=off).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace p2p::sync::rules {

// One peer's contribution to a round: its decoded gradient and how many samples it averages over
// (0: the peer had no data this round and carries no weight).
struct Input {
  std::span<const float> grad;
  uint64_t samples = 0;
};

class Rule {
 public:
  virtual ~Rule() = default;
  virtual std::string_view name() const = 0;
  // The canonical spec, every parameter spelled out ("krum:f=1"): what goes into the start
  // fingerprint, so peers that would combine differently refuse to start together.
  virtual std::string spec() const { return std::string(name()); }
  // Whether the rule can combine `n` inputs (Krum needs n >= 2f + 3, Bulyan n >= 4f + 3, ...):
  // InvalidArgument naming the rule and the numbers otherwise. Checked at start for the run's
  // size, and by Aggregate for the inputs that have samples.
  virtual Status CheckCount(size_t n) const {
    (void)n;
    return Status::Ok();
  }
  // True when out[i] depends only on the inputs' i-th values, so the rule may be applied slice
  // by slice (reduce-scatter-average does). Rules that compare whole gradients (distances,
  // scores) are not.
  virtual bool coordinatewise() const = 0;
  // Combines `inputs` (in rank order; each of out.size() values) into `out`. InvalidArgument if
  // a size differs from out.size() or no input has samples; `out` is unspecified then.
  virtual Status Aggregate(std::span<const Input> inputs, std::span<float> out) const = 0;
};

// By spec: NAME or NAME:key=value[,key=value...] ("mean", "krum:f=1",
// "trimmed-mean:beta=0.2"). An unknown name is InvalidArgument listing the valid ones; a bad
// parameter is InvalidArgument naming the rule and the parameter.
Result<std::unique_ptr<Rule>> MakeRule(std::string_view spec);
// The same for a name validated before (MakeStrategy does): P2P_CHECK instead of an error.
std::unique_ptr<Rule> MakeCheckedRule(std::string_view name);
std::vector<std::string> RuleNames();

}  // namespace p2p::sync::rules
