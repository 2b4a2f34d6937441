// Aggregation rules: how the W decoded gradients of one round become the gradient every peer
// applies. This is the seam for robust aggregation (rules that bound what a Byzantine peer can do
// to the update); today the registry holds one rule, `mean`, the sample-weighted mean
// (sync/rules/mean.h).
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
  // True when out[i] depends only on the inputs' i-th values, so the rule may be applied slice
  // by slice (reduce-scatter-average does). Rules that compare whole gradients (distances,
  // scores) are not.
  virtual bool coordinatewise() const = 0;
  // Combines `inputs` (in rank order; each of out.size() values) into `out`. InvalidArgument if
  // a size differs from out.size() or no input has samples; `out` is unspecified then.
  virtual Status Aggregate(std::span<const Input> inputs, std::span<float> out) const = 0;
};

// By name ("mean"); an unknown name is InvalidArgument listing the valid ones.
Result<std::unique_ptr<Rule>> MakeRule(std::string_view name);
// The same for a name validated before (MakeStrategy does): P2P_CHECK instead of an error.
std::unique_ptr<Rule> MakeCheckedRule(std::string_view name);
std::vector<std::string> RuleNames();

}  // namespace p2p::sync::rules
