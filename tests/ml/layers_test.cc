// Layer tests: forward against naive references, backward against finite differences.
#include <gtest/gtest.h>

#include <numeric>

#include "ml/layers/activation.h"
#include "ml/layers/conv2d.h"
#include "ml/layers/dropout.h"
#include "ml/layers/linear.h"
#include "ml/layers/pool.h"
#include "tests/ml/gradcheck.h"

namespace p2p::ml {
namespace {

using gradcheck::CheckLayer;
using gradcheck::kTolerance;
using gradcheck::RandomMatrix;

void ExpectGradientsMatch(const gradcheck::GradCheck& check, bool has_params) {
  ::testing::Test::RecordProperty("max_rel_diff_input", std::to_string(check.input));
  ::testing::Test::RecordProperty("max_rel_diff_params", std::to_string(check.params));
  std::printf("    max relative difference: input %.3g, params %.3g (tolerance %.g)\n", check.input,
              check.params, kTolerance);
  EXPECT_LT(check.input, kTolerance);
  if (has_params) {
    EXPECT_LT(check.params, kTolerance);
  }
}

// Values whose magnitude is at least 0.1, so a +-kEps step never crosses ReLU's kink.
Matrix AwayFromZero(Matrix m) {
  m.array() += m.array().sign() * 0.1f + (m.array() == 0.0f).cast<float>() * 0.1f;
  return m;
}

// Distinct values spaced 0.1 apart in shuffled order: no max-pool window has a near-tie.
Matrix DistinctValues(Eigen::Index rows, Eigen::Index cols, uint64_t seed) {
  std::vector<float> values(size_t(rows * cols));
  std::iota(values.begin(), values.end(), 0.0f);
  std::shuffle(values.begin(), values.end(), Rng(seed));
  Matrix m = Eigen::Map<Matrix>(values.data(), rows, cols) * 0.1f;
  return m;
}

TEST(Linear, ForwardIsXWtPlusB) {
  Linear layer(3, 2);
  std::vector<float> params = {1, 2, 3, 4, 5, 6, 0.5f, -1}, grads(8);
  layer.Bind(params.data(), grads.data());
  Matrix x(2, 3);
  x << 1, 0, -1, 2, 1, 0;
  Matrix y;
  layer.Forward(x, y, false);
  Matrix want(2, 2);
  want << 1 - 3 + 0.5f, 4 - 6 - 1, 2 + 2 + 0.5f, 8 + 5 - 1;
  EXPECT_EQ(y, want);
}

TEST(Linear, GradientMatchesFiniteDifferences) {
  Linear layer(5, 4);
  ExpectGradientsMatch(CheckLayer(layer, RandomMatrix(3, 5, 1), 2, gradcheck::kLinearEps), true);
}

TEST(Linear, BackwardAccumulatesAndSkipsNullInputGradient) {
  Linear layer(4, 3);
  std::vector<float> params(layer.NumParams()), grads(layer.NumParams(), 0.0f);
  layer.Bind(params.data(), grads.data());
  Rng rng(3);
  layer.Init(rng);
  const Matrix x = RandomMatrix(2, 4, 4), dy = RandomMatrix(2, 3, 5);
  Matrix y;
  layer.Forward(x, y, true);
  layer.Backward(x, dy, nullptr);
  const std::vector<float> once = grads;
  layer.Backward(x, dy, nullptr);
  for (size_t i = 0; i < grads.size(); ++i) EXPECT_FLOAT_EQ(grads[i], 2 * once[i]);
}

TEST(Linear, InitIsSmallNormalWeightsAndZeroBias) {
  Linear layer(400, 100);
  std::vector<float> params(layer.NumParams(), 7.0f), grads(layer.NumParams());
  layer.Bind(params.data(), grads.data());
  Rng rng(5);
  layer.Init(rng);
  const ConstVectorMap w(params.data(), 40000), b(params.data() + 40000, 100);
  const double mean = w.cast<double>().mean();
  const double std = std::sqrt((w.cast<double>().array() - mean).square().mean());
  EXPECT_NEAR(mean, 0.0, 2e-4);
  EXPECT_NEAR(std, Linear::kInitStd, 2e-4);
  EXPECT_TRUE(b.isZero(0.0f));
}

TEST(ReLU, GradientMatchesFiniteDifferences) {
  ReLU layer;
  ExpectGradientsMatch(CheckLayer(layer, AwayFromZero(RandomMatrix(3, 7, 6)), 7), false);
}

TEST(LogSoftmax, RowsAreLogProbabilities) {
  LogSoftmax layer;
  Matrix x = RandomMatrix(4, 6, 8, 10.0f), y;
  x(0, 0) = 1e4f;  // large logits must not overflow
  layer.Forward(x, y, false);
  for (Eigen::Index n = 0; n < y.rows(); ++n) {
    EXPECT_NEAR(y.row(n).array().exp().sum(), 1.0f, 1e-5f);
  }
  EXPECT_TRUE(y.allFinite());
}

TEST(LogSoftmax, GradientMatchesFiniteDifferences) {
  LogSoftmax layer;
  ExpectGradientsMatch(CheckLayer(layer, RandomMatrix(3, 5, 9), 10), false);
}

TEST(Flatten, IsIdentityOnRows) {
  Flatten layer;
  EXPECT_EQ(layer.OutputShape({2, 3, 4}), (Shape{24, 1, 1}));
  ExpectGradientsMatch(CheckLayer(layer, RandomMatrix(2, 24, 11), 12), false);
}

TEST(Dropout, GradientMatchesFiniteDifferencesWithTheSameMask) {
  Dropout layer(0.4f);
  auto replay_mask = [&] {
    Rng rng(99);
    layer.Init(rng);
  };
  ExpectGradientsMatch(CheckLayer(layer, RandomMatrix(4, 6, 13), 14, gradcheck::kEps, replay_mask),
                       false);
}

TEST(Dropout, ScalesSurvivorsAndDropsAboutP) {
  Dropout layer(0.25f);
  Rng rng(15);
  layer.Init(rng);
  const Matrix x = Matrix::Constant(200, 100, 2.0f);
  Matrix y;
  layer.Forward(x, y, true);
  const double dropped = (y.array() == 0.0f).cast<double>().mean();
  EXPECT_NEAR(dropped, 0.25, 0.01);
  EXPECT_TRUE(((y.array() == 0.0f) || (y.array() == 2.0f / 0.75f)).all());
  EXPECT_NEAR(y.cast<double>().mean(), 2.0, 0.03);  // inverted dropout keeps the expectation
}

TEST(Dropout, IdentityWhenNotTrainingAndDeterministicPerSeed) {
  Dropout a(0.5f), b(0.5f);
  Rng rng_a(16), rng_b(16);
  a.Init(rng_a);
  b.Init(rng_b);
  const Matrix x = RandomMatrix(8, 8, 17);
  Matrix ya, yb, eval;
  a.Forward(x, ya, true);
  b.Forward(x, yb, true);
  EXPECT_EQ(ya, yb);
  a.Forward(x, eval, false);
  EXPECT_EQ(eval, x);
}

// Direct (non-im2col) cross-correlation in double: the reference Conv2d must match.
Matrix NaiveConv(const Matrix& x, Shape in, const std::vector<float>& p, int out_c, int k, int s,
                 int pad) {
  const int oh_n = ConvOutExtent(in.h, k, s, pad), ow_n = ConvOutExtent(in.w, k, s, pad);
  const size_t bias = size_t(out_c) * in.c * k * k;
  Matrix y(x.rows(), out_c * oh_n * ow_n);
  for (Eigen::Index n = 0; n < x.rows(); ++n) {
    for (int o = 0; o < out_c; ++o) {
      for (int oh = 0; oh < oh_n; ++oh) {
        for (int ow = 0; ow < ow_n; ++ow) {
          double sum = p[bias + o];
          for (int c = 0; c < in.c; ++c) {
            for (int ki = 0; ki < k; ++ki) {
              for (int kj = 0; kj < k; ++kj) {
                const int ih = oh * s - pad + ki, iw = ow * s - pad + kj;
                if (ih < 0 || ih >= in.h || iw < 0 || iw >= in.w) continue;
                sum += double(p[((size_t(o) * in.c + c) * k + ki) * k + kj]) *
                       x(n, (c * in.h + ih) * in.w + iw);
              }
            }
          }
          y(n, (o * oh_n + oh) * ow_n + ow) = float(sum);
        }
      }
    }
  }
  return y;
}

struct ConvCase {
  Shape in;
  int out_c, kernel, stride, padding;
};

class Conv2dTest : public ::testing::TestWithParam<ConvCase> {};

TEST_P(Conv2dTest, ForwardMatchesDirectConvolution) {
  const ConvCase c = GetParam();
  Conv2d layer(c.in, c.out_c, c.kernel, c.stride, c.padding);
  std::vector<float> params(layer.NumParams()), grads(layer.NumParams());
  layer.Bind(params.data(), grads.data());
  Rng rng(20);
  FillNormal(rng, 1.0f, params);
  const Matrix x = RandomMatrix(3, c.in.size(), 21);
  Matrix y;
  layer.Forward(x, y, false);
  const Matrix want = NaiveConv(x, c.in, params, c.out_c, c.kernel, c.stride, c.padding);
  ASSERT_EQ(y.cols(), layer.OutputShape(c.in).size());
  EXPECT_LT((y - want).cwiseAbs().maxCoeff(), 1e-4f);
}

TEST_P(Conv2dTest, GradientMatchesFiniteDifferences) {
  const ConvCase c = GetParam();
  Conv2d layer(c.in, c.out_c, c.kernel, c.stride, c.padding);
  ExpectGradientsMatch(
      CheckLayer(layer, RandomMatrix(2, c.in.size(), 22), 23, gradcheck::kLinearEps), true);
}

// Stride 1 takes the wide im2col, with dW from dot products while out_c*in_c*k*k <= 256 and from
// a GEMM above (the last two cases); other strides take the compact im2col.
INSTANTIATE_TEST_SUITE_P(
    Shapes, Conv2dTest,
    ::testing::Values(ConvCase{{1, 5, 5}, 2, 3, 1, 0}, ConvCase{{2, 7, 6}, 3, 3, 2, 1},
                      ConvCase{{1, 6, 6}, 2, 5, 1, 2}, ConvCase{{3, 5, 7}, 2, 2, 2, 0},
                      ConvCase{{2, 4, 4}, 1, 3, 3, 2}, ConvCase{{3, 6, 5}, 12, 3, 1, 1},
                      ConvCase{{4, 6, 6}, 9, 3, 1, 0}));

TEST(Conv2d, OutputShapeWithStrideAndPadding) {
  EXPECT_EQ(Conv2d({1, 28, 28}, 6, 5, 1, 2).OutputShape({1, 28, 28}), (Shape{6, 28, 28}));
  EXPECT_EQ(Conv2d({6, 14, 14}, 16, 5).OutputShape({6, 14, 14}), (Shape{16, 10, 10}));
  EXPECT_EQ(Conv2d({3, 32, 32}, 8, 3, 2, 1).OutputShape({3, 32, 32}), (Shape{8, 16, 16}));
  EXPECT_THROW(Conv2d({3, 32, 32}, 8, 3).OutputShape({1, 32, 32}), InvariantError);
}

TEST(Conv2d, InitIsKaimingNormal) {
  Conv2d layer({8, 12, 12}, 64, 5);
  std::vector<float> params(layer.NumParams(), 7.0f), grads(layer.NumParams());
  layer.Bind(params.data(), grads.data());
  Rng rng(24);
  layer.Init(rng);
  const size_t n = 64 * 8 * 25;
  const ConstVectorMap w(params.data(), n), b(params.data() + n, 64);
  const double std = std::sqrt(w.cast<double>().array().square().mean());
  EXPECT_NEAR(std, std::sqrt(2.0 / (8 * 25)), 2e-3);
  EXPECT_TRUE(b.isZero(0.0f));
}

TEST(MaxPool2d, ForwardTakesWindowMaxima) {
  MaxPool2d layer({1, 4, 4}, 2, 2);
  Matrix x(1, 16), y;
  x << 1, 2, 0, 0,   //
      3, 4, 0, 9,    //
      -1, -2, 5, 5,  //
      -3, -4, 5, 6;
  layer.Forward(x, y, false);
  Matrix want(1, 4);
  want << 4, 9, -1, 6;
  EXPECT_EQ(y, want);
}

TEST(MaxPool2d, GradientMatchesFiniteDifferences) {
  MaxPool2d layer({2, 4, 6}, 2, 2);
  ExpectGradientsMatch(CheckLayer(layer, DistinctValues(3, 48, 25), 26), false);
}

// The 2x2 fast path (even input) and the general path (odd input) must agree on ties.
TEST(MaxPool2d, TiesSendTheGradientToTheFirstMaximum) {
  for (int size : {4, 5}) {
    MaxPool2d layer({1, size, size}, 2, 2);
    const Matrix x = Matrix::Ones(1, size * size);
    Matrix y, dx;
    layer.Forward(x, y, true);
    layer.Backward(x, Matrix::Constant(1, 4, 3.0f), &dx);
    Matrix want = Matrix::Zero(1, size * size);
    for (int i : {0, 2, 2 * size, 2 * size + 2}) want(0, i) = 3.0f;
    EXPECT_EQ(dx, want) << "input " << size << "x" << size;
  }
}

TEST(MaxPool2d, OddInputUsesTheGeneralPath) {
  MaxPool2d layer({2, 5, 7}, 2, 2);
  EXPECT_EQ(layer.OutputShape({2, 5, 7}), (Shape{2, 2, 3}));
  ExpectGradientsMatch(CheckLayer(layer, DistinctValues(2, 70, 29), 30), false);
}

TEST(MaxPool2d, OverlappingWindowsAccumulateGradient) {
  MaxPool2d layer({1, 7, 7}, 3, 2);
  EXPECT_EQ(layer.OutputShape({1, 7, 7}), (Shape{1, 3, 3}));
  ExpectGradientsMatch(CheckLayer(layer, DistinctValues(2, 49, 27), 28), false);
}

}  // namespace
}  // namespace p2p::ml
