// Distance-based selection (Blanchard et al. 2017; El Mhamdi et al. 2018): rules that compare
// whole gradients, so they need every peer's entire vector (allgather-average).
//
// Krum scores each input by the sum of its squared distances to its n - f - 2 nearest other
// inputs and picks the lowest score; Multi-Krum averages the m lowest-scoring inputs (weighted by
// samples, with the mean's kernel); Bulyan picks n - 2f inputs by repeated Krum, then takes, per
// coordinate, the mean of the n - 4f picked values closest to their median.
//
// n counts the inputs with samples (the others carry no gradient this round). Distances are
// summed in double with a fixed split (rule_params.h), scores in double in ascending order, and
// ties go to the lower rank: the same choice on every peer.
#pragma once

#include <vector>

#include "sync/rules/rule.h"

namespace p2p::sync::rules {

class KrumRule final : public Rule {
 public:
  explicit KrumRule(int f) : f_(f) {}
  std::string_view name() const override { return "krum"; }
  std::string spec() const override;
  bool coordinatewise() const override { return false; }
  Status CheckCount(size_t n) const override;  // n >= 2f + 3
  Status Aggregate(std::span<const Input> inputs, std::span<float> out) const override;

 private:
  int f_;
};

class MultiKrumRule final : public Rule {
 public:
  // m = 0: n - f, the most the rule may average.
  MultiKrumRule(int f, int m) : f_(f), m_(m) {}
  std::string_view name() const override { return "multi-krum"; }
  std::string spec() const override;
  bool coordinatewise() const override { return false; }
  Status CheckCount(size_t n) const override;  // n >= 2f + 3 and m <= n - f
  Status Aggregate(std::span<const Input> inputs, std::span<float> out) const override;

 private:
  int f_, m_;
};

class BulyanRule final : public Rule {
 public:
  explicit BulyanRule(int f) : f_(f) {}
  std::string_view name() const override { return "bulyan"; }
  std::string spec() const override;
  bool coordinatewise() const override { return false; }
  Status CheckCount(size_t n) const override;  // n >= 4f + 3
  Status Aggregate(std::span<const Input> inputs, std::span<float> out) const override;

 private:
  int f_;
};

// Exposed for tests: Krum scores of the inputs `set` (positions into the n x n matrix `d2` of
// squared distances) with f assumed Byzantine: each is the sum of its max(|set| - f - 2, 0)
// smallest distances to the others in the set.
std::vector<double> KrumScores(const std::vector<double>& d2, size_t n,
                               const std::vector<size_t>& set, int f);

}  // namespace p2p::sync::rules
