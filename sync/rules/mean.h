// The sample-weighted mean: sum over inputs, in order, of (samples / total) * gradient. The one
// implementation behind allgather-average, reduce-scatter-average (through MeanRule) and the
// offload pool's WeightedSum (through MeanAccumulator, result by result).
//
// Bits: the weight is computed in double and rounded to float once, every product and sum is a
// float operation in input order, starting from +0. Inputs with zero samples are skipped (their
// weight is exactly 0, and adding 0 * g to a sum that started at +0 changes no bit for finite g).
// Every peer therefore computes the same bits from the same inputs in the same order.
#pragma once

#include <cstdint>
#include <span>

#include "sync/rules/rule.h"

namespace p2p::sync::rules {

// samples / total rounded to float; 0 exactly when samples is 0.
float MeanWeight(uint64_t samples, uint64_t total);

// The mean built input by input, so a caller may drop each input once added (the offload pool
// sums a round's results batch by batch): the same inputs in the same order give the same bits
// as MeanRule::Aggregate over all of them at once.
class MeanAccumulator {
 public:
  // Zeroes `out`. `total` is the sum of the samples of every input that will be added.
  MeanAccumulator(std::span<float> out, uint64_t total);
  // out += MeanWeight(samples, total) * grad. total must be > 0 and grad.size() == out.size()
  // (P2P_CHECK: callers validate untrusted counts and sizes first).
  void Add(std::span<const float> grad, uint64_t samples);

 private:
  std::span<float> out_;
  uint64_t total_;
};

class MeanRule final : public Rule {
 public:
  std::string_view name() const override { return "mean"; }
  bool coordinatewise() const override { return true; }
  Status Aggregate(std::span<const Input> inputs, std::span<float> out) const override;
};

}  // namespace p2p::sync::rules
