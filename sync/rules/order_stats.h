// Coordinate-wise order statistics: each output coordinate is computed from the sorted values of
// that coordinate alone, so these rules also run slice by slice (reduce-scatter-average).
//
// Both ignore sample counts except that inputs with 0 samples are left out: an order statistic
// has no natural weighting, and weighting by samples would let a peer claiming many samples move
// the median (docs/robustness.md). Values are sorted by a total order on their bits, and sums are
// taken in double in sorted order, then rounded to float once: the same bits on every peer.
#pragma once

#include "sync/rules/rule.h"

namespace p2p::sync::rules {

// The coordinate-wise median; for an even count the mean of the two middle values.
class MedianRule final : public Rule {
 public:
  std::string_view name() const override { return "median"; }
  bool coordinatewise() const override { return true; }
  Status Aggregate(std::span<const Input> inputs, std::span<float> out) const override;
};

// The coordinate-wise beta-trimmed mean: of n values, floor(beta * n) are dropped from each end
// and the rest averaged (0 <= beta < 0.5, so at least one is left).
class TrimmedMeanRule final : public Rule {
 public:
  explicit TrimmedMeanRule(double beta) : beta_(beta) {}
  std::string_view name() const override { return "trimmed-mean"; }
  std::string spec() const override;
  bool coordinatewise() const override { return true; }
  Status Aggregate(std::span<const Input> inputs, std::span<float> out) const override;
  // How many values are dropped from each end of n.
  size_t Trimmed(size_t n) const;

 private:
  double beta_;
};

}  // namespace p2p::sync::rules
