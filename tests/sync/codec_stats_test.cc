// Statistical properties of the stochastic codecs (qsgd, qsgd-elias, qsgd-linf): unbiasedness
// and the QSGD variance bound, checked against many seeds with tolerances derived below.
//
// Model. For coordinate i of bucket b, the encoder computes a = |x_i| * (s / scale_b) in float,
// f = floor(a), p = a - f, and sends level f + 1 with probability p' = P(u < p) where u is a
// uniform 24-bit fraction: p' = ceil(p * 2^24) / 2^24 (p itself up to 2^-24). The decoder returns
// sign(x_i) * fl(level * step_b), step_b = fl(scale_b / s). So the decoded value takes exactly two
// values, and its exact mean mu_i and variance are known in closed form (computed below in double).
//
// Unbiasedness: mu_i differs from x_i only by float rounding (a few ulps of x_i plus 2^-24 of a
// step): asserted directly. The empirical mean m_i over T independent seeds then has
// |m_i - mu_i| < eps_i with probability >= 1 - delta/n by Hoeffding's inequality for a variable
// with range step_b: P(|m - mu| >= eps) <= 2 exp(-2 T eps^2 / step^2), i.e.
// eps = step * sqrt(ln(2n/delta) / (2T)). With n = 200, T = 4000, delta = 1e-6 (for all n
// coordinates together, by the union bound) that is eps = 0.050 step. A biased rounding (round to
// nearest: bias up to step/2; the study's Elias code decoding level 0 as 1: bias of a step) fails
// it by a wide margin.
//
// Variance: the squared error of one round, S = sum_i (xhat_i - x_i)^2, has exact mean
// E[S] = sum_i step_i^2 p'_i (1 - p'_i) (+ the tiny squared bias) and variance
// Var[S] = sum_i step_i^4 p'(1-p')(1-2p')^2. The mean of S over T rounds is within 100 standard
// deviations (sqrt(Var[S] / T)) of E[S] with probability >= 1 - 1e-4 (Chebyshev). And E[S] must
// satisfy QSGD's Lemma 3.1 for L2 scaling: E||Q(v) - v||^2 <= min(d/s^2, sqrt(d)/s) ||v||^2 per
// bucket of d values (for max-abs scaling: <= d * max^2 / (4 s^2)).
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "sync/codecs/codec.h"

namespace p2p::sync::codecs {
namespace {

struct Expected {
  std::vector<double> mean, step;  // per coordinate
  double mse = 0, mse_var = 0;     // E[S] and Var[S]
  double bound = 0;                // QSGD's variance bound
};

Expected Model(const std::vector<float>& x, int bits, size_t bucket, bool linf) {
  const float s = static_cast<float>((1u << bits) - 1);
  const size_t n = x.size(), b = bucket ? bucket : n;
  Expected e;
  e.mean.resize(n);
  e.step.resize(n);
  for (size_t start = 0; start < n; start += b) {
    const size_t end = std::min(n, start + b);
    double sq = 0, max = 0;
    for (size_t i = start; i < end; ++i) {
      sq += double(x[i]) * x[i];
      max = std::max(max, double(std::fabs(x[i])));
    }
    const float scale = linf ? static_cast<float>(max) : static_cast<float>(std::sqrt(sq));
    const float inv = s / scale, step = scale / s;
    const double d = double(end - start);
    e.bound += linf ? d * max * max / (4.0 * double(s) * s)
                    : std::min(d / (double(s) * s), std::sqrt(d) / s) * sq;
    for (size_t i = start; i < end; ++i) {
      const float a = std::fabs(x[i]) * inv, f = std::floor(a);
      double p = std::ceil(double(a - f) * 0x1p24) / 0x1p24;
      float lo = f, hi = f + 1;
      if (f >= s) lo = hi = s, p = 0;
      const double vlo = double(lo * step), vhi = double(hi * step);
      const double mag = (1 - p) * vlo + p * vhi;
      e.mean[i] = x[i] < 0 ? -mag : mag;
      e.step[i] = vhi - vlo;
      const double var = (vhi - vlo) * (vhi - vlo) * p * (1 - p);
      const double bias = mag - std::fabs(double(x[i]));
      e.mse += var + bias * bias;
      e.mse_var += std::pow(vhi - vlo, 4) * p * (1 - p) * (1 - 2 * p) * (1 - 2 * p);
    }
  }
  return e;
}

class Unbiased : public ::testing::TestWithParam<std::string> {};

TEST_P(Unbiased, MeanOfManyDecodesConvergesToTheInputAndVarianceIsBounded) {
  auto config = ParseCodecSpec(GetParam());
  ASSERT_TRUE(config.ok());
  auto made = MakeCodec(*config);
  ASSERT_TRUE(made.ok());
  const Codec& codec = **made;
  const int bits = static_cast<int>(codec.config().params.at("bits"));
  const size_t bucket = static_cast<size_t>(codec.config().params.at("bucket"));
  const bool linf = codec.id() == "qsgd-linf";

  constexpr size_t kN = 200;  // not a multiple of 64 or of the buckets
  constexpr int kT = 4000;
  std::mt19937_64 gen(5);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> x(kN);
  for (float& v : x) v = dist(gen);
  x[3] = 0.0f;  // exact zeros stay exact
  x[4] = 8.0f;  // an outlier: near the top level in its bucket
  const Expected e = Model(x, bits, bucket, linf);

  std::vector<double> sum(kN, 0.0);
  double mse_sum = 0;
  std::vector<float> y(kN);
  std::vector<std::byte> payload;
  for (int t = 0; t < kT; ++t) {
    payload.clear();
    ASSERT_TRUE(codec.Encode(x, RoundSeed(42, 0, 1, static_cast<uint64_t>(t)), payload).ok());
    ASSERT_TRUE(codec.Decode(payload, y).ok());
    double sq = 0;
    for (size_t i = 0; i < kN; ++i) {
      sum[i] += y[i];
      sq += (double(y[i]) - x[i]) * (double(y[i]) - x[i]);
    }
    mse_sum += sq;
  }

  const double delta = 1e-6;
  const double hoeffding = std::sqrt(std::log(2.0 * kN / delta) / (2.0 * kT));  // ~0.050
  for (size_t i = 0; i < kN; ++i) {
    // The model's mean is the input up to float rounding...
    ASSERT_LE(std::fabs(e.mean[i] - x[i]), 1e-6 * std::fabs(x[i]) + e.step[i] * 0x1p-23)
        << GetParam() << " coordinate " << i;
    // ...and the empirical mean is within the Hoeffding bound of it.
    const double m = sum[i] / kT;
    EXPECT_LE(std::fabs(m - e.mean[i]), hoeffding * e.step[i] + 1e-12)
        << GetParam() << " coordinate " << i << ": x " << x[i] << " mean " << m << " step "
        << e.step[i];
  }
  EXPECT_EQ(sum[3], 0.0);

  const double mse = mse_sum / kT;
  const double sd = std::sqrt(e.mse_var / kT);
  EXPECT_NEAR(mse, e.mse, 100 * sd + 1e-12 * e.mse) << GetParam();
  EXPECT_LE(e.mse, e.bound) << GetParam() << ": the QSGD variance bound";
  EXPECT_GT(e.mse, 0.0);  // the test measures something
}

INSTANTIATE_TEST_SUITE_P(Codecs, Unbiased,
                         ::testing::Values("qsgd", "qsgd:bits=2,bucket=64",
                                           "qsgd:bits=4,bucket=128", "qsgd-elias",
                                           "qsgd-elias:bits=3,code=omega",
                                           "qsgd-elias:bits=2,bucket=64",
                                           "qsgd-elias:bucket=64,order=3", "qsgd-linf:bits=5",
                                           "qsgd-linf:bits=2,bucket=64"),
                         [](const auto& info) {
                           std::string name = info.param;
                           for (char& c : name) {
                             if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
                           }
                           return name;
                         });

// Different rounds must not reuse randomness: decoding the same input with two round seeds gives
// different roundings (with 200 coordinates and fractional levels, equal payloads would mean a
// shared generator state).
TEST(Unbiased, RoundsDrawIndependentRoundings) {
  auto codec = MakeCodec({"qsgd", {{"bits", 4}}});
  ASSERT_TRUE(codec.ok());
  std::vector<float> x(200);
  for (size_t i = 0; i < x.size(); ++i) x[i] = std::sin(float(i));
  std::vector<std::byte> a, b;
  ASSERT_TRUE((*codec)->Encode(x, RoundSeed(1, 0, 1, 0), a).ok());
  ASSERT_TRUE((*codec)->Encode(x, RoundSeed(1, 0, 1, 1), b).ok());
  EXPECT_NE(a, b);
}

}  // namespace
}  // namespace p2p::sync::codecs
