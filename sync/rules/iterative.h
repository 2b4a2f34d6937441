// Iterative robust centres: rules that move an estimate towards the inputs step by step, with
// whole-vector norms in every step (so they need allgather-average). All arithmetic is in double
// with a fixed summation order (inputs in rank order, norms with a fixed 4-way split), a fixed
// number of steps or a stopping test on those same numbers, and one rounding to float at the end:
// the same bits on every peer.
//
// Both weight inputs by their samples (an input with 0 samples has weight 0 and is left out).
#pragma once

#include "sync/rules/rule.h"

namespace p2p::sync::rules {

// CenteredClip (Karimireddy, He and Jaggi 2021; hivemind's rule): from v = the coordinate-wise
// median, `iters` times v <- v + sum_i w_i * (x_i - v) * min(1, tau / |x_i - v|). An input far
// from the centre moves it by at most w_i * tau per step. With tau above every distance the first
// step lands on the weighted mean.
class CenteredClipRule final : public Rule {
 public:
  CenteredClipRule(double tau, int iters) : tau_(tau), iters_(iters) {}
  std::string_view name() const override { return "centered-clip"; }
  std::string spec() const override;
  bool coordinatewise() const override { return false; }
  Status Aggregate(std::span<const Input> inputs, std::span<float> out) const override;

 private:
  double tau_;
  int iters_;
};

// The geometric median (the point minimising the weighted sum of Euclidean distances) by
// Weiszfeld's iteration from the weighted mean: z <- sum_i (w_i / d_i) x_i / sum_i (w_i / d_i),
// with d_i = max(|x_i - z|, 1e-12) (an input at z does not divide by zero). Stops when a step
// moves z by at most tol * |z|, or after `iters` steps.
class GeoMedianRule final : public Rule {
 public:
  GeoMedianRule(double tol, int iters) : tol_(tol), iters_(iters) {}
  std::string_view name() const override { return "geomedian"; }
  std::string spec() const override;
  bool coordinatewise() const override { return false; }
  Status Aggregate(std::span<const Input> inputs, std::span<float> out) const override;
  // Steps the last Aggregate took (for tests and the docs' measurements; not thread-safe).
  int last_iterations() const { return last_iterations_; }

 private:
  double tol_;
  int iters_;
  mutable int last_iterations_ = 0;
};

}  // namespace p2p::sync::rules
