// Finite-difference gradient checking shared by the ml tests (header-only, test code only).
//
// A layer is checked through the scalar L(x, theta) = sum(r .* Forward(x)) for a fixed random r,
// so dL/dy = r is what Backward receives. Central differences in float with step kEps; the
// reported figure is the max over all coordinates of |analytic - numeric| / max(|a|, |n|, kFloor).
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <random>
#include <vector>

#include "common/status.h"
#include "ml/layer.h"
#include "ml/random.h"

namespace p2p::ml::gradcheck {

inline constexpr float kEps = 1e-2f;
// For layers linear in each argument (Linear, Conv2d) central differences are exact up to float
// rounding, so a larger step only divides the rounding noise by more.
inline constexpr float kLinearEps = 1e-1f;
inline constexpr double kFloor = 1e-2;  // gradients below this compare absolutely
inline constexpr double kTolerance = 1e-2;

inline double RelDiff(double analytic, double numeric) {
  return std::abs(analytic - numeric) / std::max({std::abs(analytic), std::abs(numeric), kFloor});
}

inline Matrix RandomMatrix(Eigen::Index rows, Eigen::Index cols, uint64_t seed,
                           float stddev = 1.0f) {
  Matrix m(rows, cols);
  Rng rng(seed);
  FillNormal(rng, stddev, {m.data(), size_t(m.size())});
  return m;
}

// Max relative difference of dL/dvalues, perturbing `values` in place (restored afterwards).
inline double MaxRelDiff(float* values, size_t count, const std::vector<double>& analytic,
                         const std::function<double()>& loss, float eps = kEps) {
  double worst = 0;
  for (size_t i = 0; i < count; ++i) {
    const float saved = values[i];
    values[i] = saved + eps;
    const double plus = loss();
    values[i] = saved - eps;
    const double minus = loss();
    values[i] = saved;
    worst = std::max(worst, RelDiff(analytic[i], (plus - minus) / (2.0 * eps)));
  }
  return worst;
}

struct GradCheck {
  double input = 0;   // max relative difference of dL/dx
  double params = 0;  // max relative difference of dL/dtheta (0 without parameters)
};

// Binds fresh buffers, sets parameters to N(0, 0.5^2) (so biases are non-zero too), and compares
// Backward with finite differences. `before_forward` runs before every Forward (e.g. to replay the
// same dropout mask).
inline GradCheck CheckLayer(
    Layer& layer, Matrix x, uint64_t seed, float eps = kEps,
    const std::function<void()>& before_forward = [] {}) {
  std::vector<float> params(layer.NumParams()), grads(layer.NumParams(), 0.0f);
  layer.Bind(params.data(), grads.data());
  Rng rng(seed);
  FillNormal(rng, 0.5f, params);
  Matrix y, r;
  auto loss = [&] {
    before_forward();
    layer.Forward(x, y, /*training=*/true);
    return (y.cast<double>().array() * r.cast<double>().array()).sum();
  };
  before_forward();
  layer.Forward(x, y, /*training=*/true);
  r = RandomMatrix(y.rows(), y.cols(), seed + 1);
  Matrix dx;
  layer.Backward(x, r, &dx);
  EXPECT_EQ(dx.rows(), x.rows());
  EXPECT_EQ(dx.cols(), x.cols());
  GradCheck result;
  result.input = MaxRelDiff(x.data(), x.size(),
                            std::vector<double>(dx.data(), dx.data() + dx.size()), loss, eps);
  result.params = MaxRelDiff(params.data(), params.size(),
                             std::vector<double>(grads.begin(), grads.end()), loss, eps);
  return result;
}

}  // namespace p2p::ml::gradcheck
