// The layers of the studies' CNNs (issue 15): forward against naive references and backward
// against finite differences (tests/ml/gradcheck.h: float forward passes, losses summed in double).
#include <gtest/gtest.h>

#include <cmath>

#include "ml/layers/activation.h"
#include "ml/layers/adaptive_avg_pool.h"
#include "ml/layers/avg_pool.h"
#include "ml/layers/batchnorm.h"
#include "ml/layers/conv2d.h"
#include "ml/layers/depthwise_conv2d.h"
#include "ml/layers/graph.h"
#include "ml/layers/hard_activation.h"
#include "ml/layers/pool.h"
#include "ml/layers/squeeze_excite.h"
#include "tests/ml/gradcheck.h"

namespace p2p::ml {
namespace {

using gradcheck::CheckLayer;
using gradcheck::kTolerance;
using gradcheck::RandomMatrix;

void ExpectGradientsMatch(const gradcheck::GradCheck& check, bool has_params) {
  std::printf("    max relative difference: input %.3g, params %.3g (tolerance %.g)\n", check.input,
              check.params, kTolerance);
  EXPECT_LT(check.input, kTolerance);
  if (has_params) EXPECT_LT(check.params, kTolerance);
}

// Moves values within 0.1 of any of `kinks` 0.2 away from it, so a +-kEps step stays on one piece.
Matrix AwayFrom(Matrix m, std::initializer_list<float> kinks) {
  for (float& v : m.reshaped()) {
    for (float k : kinks) {
      if (std::abs(v - k) < 0.1f) v = k + (v >= k ? 0.2f : -0.2f);
    }
  }
  return m;
}

// Naive reference convolution of one sample: W (out, in/g, k, k), optional bias.
std::vector<float> NaiveConv(const float* x, Shape in, const std::vector<float>& params, int out_c,
                             int k, int s, int p, int groups, bool bias) {
  const int oh_n = ConvOutExtent(in.h, k, s, p), ow_n = ConvOutExtent(in.w, k, s, p);
  const int icg = in.c / groups, ocg = out_c / groups;
  std::vector<float> y(size_t(out_c) * oh_n * ow_n);
  for (int o = 0; o < out_c; ++o) {
    const int g = o / ocg;
    for (int oh = 0; oh < oh_n; ++oh) {
      for (int ow = 0; ow < ow_n; ++ow) {
        double sum = bias ? params[size_t(out_c) * icg * k * k + o] : 0.0;
        for (int ci = 0; ci < icg; ++ci) {
          for (int ki = 0; ki < k; ++ki) {
            for (int kj = 0; kj < k; ++kj) {
              const int h = oh * s + ki - p, w = ow * s + kj - p;
              if (h < 0 || w < 0 || h >= in.h || w >= in.w) continue;
              sum += double(params[((o * icg + ci) * k + ki) * k + kj]) *
                     x[((g * icg + ci) * in.h + h) * in.w + w];
            }
          }
        }
        y[(o * oh_n + oh) * ow_n + ow] = float(sum);
      }
    }
  }
  return y;
}

struct ConvCase {
  Shape in;
  int out_c, kernel, stride, padding, groups;
  bool bias;
  bool depthwise;  // DepthwiseConv2d instead of Conv2d (groups == in.c == out_c)
  int chunk = 0;   // Conv2d's samples per GEMM (0: its own choice)
};

std::unique_ptr<Layer> MakeConv(const ConvCase& c) {
  const ConvOptions o{
      .groups = c.groups, .bias = c.bias, .init = WeightInit::kFanOut, .chunk = c.chunk};
  if (c.depthwise) return std::make_unique<DepthwiseConv2d>(c.in, c.kernel, c.stride, c.padding, o);
  return std::make_unique<Conv2d>(c.in, c.out_c, c.kernel, c.stride, c.padding, o);
}

class ConvVariantTest : public ::testing::TestWithParam<ConvCase> {};

TEST_P(ConvVariantTest, ForwardMatchesNaiveConvolution) {
  const ConvCase c = GetParam();
  auto layer = MakeConv(c);
  std::vector<float> params(layer->NumParams()), grads(params.size());
  layer->Bind(params.data(), grads.data());
  Rng rng(5);
  FillNormal(rng, 0.5f, params);
  const Matrix x = RandomMatrix(3, c.in.size(), 6);
  Matrix y;
  layer->Forward(x, y, true);
  for (int n = 0; n < 3; ++n) {
    const auto want = NaiveConv(x.row(n).data(), c.in, params, c.out_c, c.kernel, c.stride,
                                c.padding, c.groups, c.bias);
    ASSERT_EQ(size_t(y.cols()), want.size());
    for (size_t i = 0; i < want.size(); ++i) EXPECT_NEAR(y(n, i), want[i], 1e-4) << i;
  }
}

TEST_P(ConvVariantTest, GradientMatchesFiniteDifferences) {
  const ConvCase c = GetParam();
  auto layer = MakeConv(c);
  ExpectGradientsMatch(
      CheckLayer(*layer, RandomMatrix(3, c.in.size(), 7), 8, gradcheck::kLinearEps), true);
}

INSTANTIATE_TEST_SUITE_P(
    Variants, ConvVariantTest,
    ::testing::Values(
        // grouped: 4 -> 6 channels in 2 groups, 3x3 stride 1 padding 1, with and without bias
        ConvCase{{4, 5, 5}, 6, 3, 1, 1, 2, true, false},
        ConvCase{{4, 6, 6}, 4, 3, 2, 1, 2, false, false},
        // 1x1 fast path, plain and grouped; 1x1 stride 2 (ResNet's downsample) takes im2col
        ConvCase{{5, 4, 3}, 7, 1, 1, 0, 1, true, false},
        ConvCase{{4, 3, 3}, 6, 1, 1, 0, 2, false, false},
        ConvCase{{3, 5, 5}, 4, 1, 2, 0, 1, false, false},
        // depthwise direct kernel: 3x3 s1 p1, 3x3 s2 p1, 5x5 s2 p2 (MobileNetV3), with bias
        ConvCase{{3, 5, 5}, 3, 3, 1, 1, 3, false, true},
        ConvCase{{3, 6, 6}, 3, 3, 2, 1, 3, false, true},
        ConvCase{{2, 7, 7}, 2, 5, 2, 2, 2, true, true},
        // the same grouped-by-channel convolution through the im2col path, for comparison
        ConvCase{{3, 6, 6}, 3, 3, 2, 1, 3, false, false},
        // samples side by side in one GEMM (large layers), batch 3 in chunks of 2 (one partial):
        // stride 1 wide layout, stride 2, grouped, and 1x1 (which then leaves the fast path)
        ConvCase{{3, 4, 5}, 4, 3, 1, 1, 1, true, false, 2},
        ConvCase{{3, 5, 5}, 4, 3, 2, 1, 1, false, false, 2},
        ConvCase{{4, 4, 4}, 6, 3, 1, 1, 2, false, false, 2},
        ConvCase{{5, 3, 3}, 7, 1, 1, 0, 1, true, false, 2}));

TEST(Conv2d, GroupsMustDivideChannels) {
  EXPECT_THROW(Conv2d({4, 5, 5}, 6, 3, 1, 1, {.groups = 3}), InvariantError);
}

TEST(BatchNorm2d, TrainingNormalisesEachChannelAndUpdatesRunningStats) {
  BatchNorm2d bn({2, 2, 2});
  std::vector<float> params(bn.NumParams()), grads(params.size()), buffers(bn.NumBuffers());
  bn.Bind(params.data(), grads.data());
  bn.BindBuffers(buffers.data());
  Rng rng(1);
  bn.Init(rng);
  EXPECT_EQ(params, (std::vector<float>{1, 1, 0, 0}));
  EXPECT_EQ(buffers, (std::vector<float>{0, 0, 1, 1}));
  Matrix x(2, 8);  // channel 0: 1..4 and 5..8; channel 1: 10 x (same)
  x << 1, 2, 3, 4, 10, 20, 30, 40, 5, 6, 7, 8, 50, 60, 70, 80;
  Matrix y;
  bn.Forward(x, y, true);
  // Channel 0 holds 1..8: mean 4.5, biased var 5.25, unbiased 6.
  const float inv = 1.0f / std::sqrt(5.25f + 1e-5f);
  EXPECT_NEAR(y(0, 0), (1 - 4.5f) * inv, 1e-5);
  EXPECT_NEAR(y(1, 3), (8 - 4.5f) * inv, 1e-5);
  EXPECT_NEAR(y(1, 7), (80 - 45.0f) / std::sqrt(525.0f + 1e-5f), 1e-5);
  EXPECT_NEAR(buffers[0], 0.1f * 4.5f, 1e-6);
  EXPECT_NEAR(buffers[1], 0.1f * 45.0f, 1e-5);
  EXPECT_NEAR(buffers[2], 0.9f + 0.1f * 6.0f, 1e-6);
  EXPECT_NEAR(buffers[3], 0.9f + 0.1f * 600.0f, 1e-4);
}

TEST(BatchNorm2d, EvaluationUsesRunningStatsAndLeavesThemAlone) {
  BatchNorm2d bn({1, 1, 2}, 1e-3f, 0.01f);
  std::vector<float> params = {2.0f, 0.5f}, grads(2), buffers = {1.0f, 4.0f};
  bn.Bind(params.data(), grads.data());
  bn.BindBuffers(buffers.data());
  Matrix x(1, 2);
  x << 3, -1;
  Matrix y;
  bn.Forward(x, y, false);
  const float inv = 1.0f / std::sqrt(4.0f + 1e-3f);
  EXPECT_NEAR(y(0, 0), 2 * (3 - 1) * inv + 0.5f, 1e-6);
  EXPECT_NEAR(y(0, 1), 2 * (-1 - 1) * inv + 0.5f, 1e-6);
  EXPECT_EQ(buffers, (std::vector<float>{1.0f, 4.0f}));
  // Momentum 0.01: one training batch moves the running mean 1 % of the way.
  Matrix batch(2, 2);
  batch << 3, 5, 7, 9;  // mean 6, unbiased var 20/3
  bn.Forward(batch, y, true);
  EXPECT_NEAR(buffers[0], 0.99f * 1 + 0.01f * 6, 1e-6);
  EXPECT_NEAR(buffers[1], 0.99f * 4 + 0.01f * 20.0f / 3, 1e-5);
}

TEST(BatchNorm2d, OneValuePerChannelGivesBetaAndKeepsRunningStats) {
  BatchNorm2d bn({3, 1, 1});
  std::vector<float> params = {1, 1, 1, 0.5f, 0.25f, 0}, grads(6), buffers = {0, 0, 0, 1, 1, 1};
  bn.Bind(params.data(), grads.data());
  bn.BindBuffers(buffers.data());
  Matrix y;
  bn.Forward(RandomMatrix(1, 3, 2), y, true);
  EXPECT_TRUE(y.allFinite());
  EXPECT_NEAR(y(0, 0), 0.5f, 1e-6);
  EXPECT_NEAR(y(0, 1), 0.25f, 1e-6);
  EXPECT_EQ(buffers, (std::vector<float>{0, 0, 0, 1, 1, 1}));
}

TEST(BatchNorm2d, GradientMatchesFiniteDifferences) {
  BatchNorm2d bn({3, 2, 3});
  ExpectGradientsMatch(CheckLayer(bn, RandomMatrix(4, 18, 3, 2.0f), 4), true);
}

TEST(AvgPool2d, ForwardAveragesWindowsAndGradientMatches) {
  AvgPool2d pool({2, 4, 4}, 2, 2);
  Matrix x = RandomMatrix(2, 32, 9), y;
  pool.Forward(x, y, true);
  ASSERT_EQ(y.cols(), 8);
  EXPECT_NEAR(y(1, 5), (x(1, 16 + 2) + x(1, 16 + 3) + x(1, 16 + 6) + x(1, 16 + 7)) / 4, 1e-6);
  ExpectGradientsMatch(CheckLayer(pool, x, 10, gradcheck::kLinearEps), false);
  AvgPool2d overlapping({1, 5, 5}, 3, 1);
  ExpectGradientsMatch(CheckLayer(overlapping, RandomMatrix(2, 25, 11), 12), false);
}

TEST(GlobalAvgPool, ForwardIsChannelMeanAndGradientMatches) {
  GlobalAvgPool pool({3, 2, 2});
  Matrix x = RandomMatrix(2, 12, 13), y;
  pool.Forward(x, y, true);
  ASSERT_EQ(y.cols(), 3);
  EXPECT_NEAR(y(1, 2), x.row(1).segment(8, 4).mean(), 1e-6);
  ExpectGradientsMatch(CheckLayer(pool, x, 14, gradcheck::kLinearEps), false);
}

// PyTorch's windows: rows [floor(i H / O), ceil((i + 1) H / O)); VGG pools a 1x1 map to 7x7.
TEST(AdaptiveAvgPool2d, ForwardUsesPyTorchsWindowsAndGradientMatches) {
  AdaptiveAvgPool2d pool({2, 5, 5}, 3, 2);  // rows [0,2) [1,4) [3,5); cols [0,3) [2,5)
  Matrix x = RandomMatrix(2, 50, 31), y;
  pool.Forward(x, y, true);
  ASSERT_EQ(y.cols(), 2 * 3 * 2);
  float want = 0;  // sample 1, channel 1, output (1, 1): rows 1..3, cols 2..4
  for (int i = 1; i < 4; ++i)
    for (int j = 2; j < 5; ++j) want += x(1, 25 + i * 5 + j);
  EXPECT_NEAR(y(1, 6 + 1 * 2 + 1), want / 9, 1e-6);
  ExpectGradientsMatch(CheckLayer(pool, x, 32, gradcheck::kLinearEps), false);
  AdaptiveAvgPool2d repeat({3, 1, 1}, 7, 7);
  Matrix one = RandomMatrix(2, 3, 33), many;
  repeat.Forward(one, many, true);
  ASSERT_EQ(many.cols(), 3 * 49);
  EXPECT_EQ(many(1, 2 * 49 + 48), one(1, 2));
  ExpectGradientsMatch(CheckLayer(repeat, one, 34, gradcheck::kLinearEps), false);
}

// SqueezeNet's MaxPool2d(3, 2, ceil_mode=True): 6 -> 3 windows (floor mode: 2), the last one
// clipped to the 2 rows/columns left.
TEST(MaxPool2d, CeilModeAddsAClippedLastWindow) {
  MaxPool2d pool({1, 6, 6}, 3, 2, /*ceil_mode=*/true);
  EXPECT_EQ(pool.OutputShape({1, 6, 6}), (Shape{1, 3, 3}));
  EXPECT_EQ(MaxPool2d({1, 6, 6}, 3, 2).OutputShape({1, 6, 6}), (Shape{1, 2, 2}));
  // A window that would start past the input is not made: 5 -> 2 in both modes.
  EXPECT_EQ(MaxPool2d({1, 5, 5}, 3, 2, true).OutputShape({1, 5, 5}), (Shape{1, 2, 2}));
  Matrix x = RandomMatrix(2, 36, 35), y;
  pool.Forward(x, y, true);
  EXPECT_EQ(y(1, 8), std::max({x(1, 28), x(1, 29), x(1, 34), x(1, 35)}));  // clipped 2x2 corner
  EXPECT_EQ(y(0, 2), std::max({x(0, 4), x(0, 5), x(0, 10), x(0, 11), x(0, 16), x(0, 17)}));
  ExpectGradientsMatch(CheckLayer(pool, x, 36), false);
}

TEST(HardActivations, ForwardValues) {
  Matrix x(1, 5), y;
  x << -4, -1.5f, 0, 2, 7;
  ReLU6 relu6;
  relu6.Forward(x, y, true);
  EXPECT_EQ(y, (Matrix(1, 5) << 0, 0, 0, 2, 6).finished());
  Hardsigmoid hsig;
  hsig.Forward(x, y, true);
  EXPECT_TRUE(y.isApprox((Matrix(1, 5) << 0, 0.25f, 0.5f, 5.0f / 6, 1).finished(), 1e-6f)) << y;
  Hardswish hswish;
  hswish.Forward(x, y, true);
  EXPECT_TRUE(y.isApprox((Matrix(1, 5) << 0, -0.375f, 0, 2 * 5.0f / 6, 7).finished(), 1e-6f)) << y;
}

TEST(HardActivations, GradientsMatchFiniteDifferences) {
  const Matrix x = RandomMatrix(3, 20, 15, 3.0f);
  ReLU6 relu6;
  ExpectGradientsMatch(CheckLayer(relu6, AwayFrom(x, {0, 6}), 16), false);
  Hardsigmoid hsig;
  ExpectGradientsMatch(CheckLayer(hsig, AwayFrom(x, {-3, 3}), 17), false);
  Hardswish hswish;
  ExpectGradientsMatch(CheckLayer(hswish, AwayFrom(x, {-3, 3}), 18), false);
}

TEST(SqueezeExcite, ForwardScalesChannelsByTheirGate) {
  SqueezeExcite se({2, 1, 2}, 1);
  // W1 (1x2) = [1 1], b1 = 0, W2 (2x1) = [1; -1], b2 = [0, 0].
  std::vector<float> params = {1, 1, 0, 1, -1, 0, 0}, grads(7);
  ASSERT_EQ(se.NumParams(), params.size());
  se.Bind(params.data(), grads.data());
  Matrix x(1, 4), y;
  x << 1, 3, 0.5f, 0.5f;  // channel means 2 and 0.5: z1 = relu(2.5) = 2.5
  se.Forward(x, y, true);
  const float g0 = HardsigmoidOf(2.5f), g1 = HardsigmoidOf(-2.5f);
  EXPECT_NEAR(y(0, 0), 1 * g0, 1e-6);
  EXPECT_NEAR(y(0, 1), 3 * g0, 1e-6);
  EXPECT_NEAR(y(0, 3), 0.5f * g1, 1e-6);
}

TEST(SqueezeExcite, GradientMatchesFiniteDifferences) {
  SqueezeExcite se({4, 2, 2}, 3);
  ExpectGradientsMatch(CheckLayer(se, RandomMatrix(3, 16, 19), 20), true);
}

Layers TwoLayers(Shape in, int out_c, int stride) {
  Layers l;
  l.push_back(std::make_unique<Conv2d>(in, out_c, 3, stride, 1, ConvOptions{.bias = false}));
  l.push_back(std::make_unique<BatchNorm2d>(l.back()->OutputShape(in)));
  return l;
}

TEST(Residual, IdentityShortcutAddsTheInput) {
  const Shape in{2, 3, 3};
  Layers body;
  body.push_back(std::make_unique<Hardswish>());
  Residual block(std::make_unique<Sequential>(in, std::move(body)), nullptr);
  Matrix x = RandomMatrix(2, 18, 21), y, hs;
  block.Forward(x, y, true);
  Hardswish().Forward(x, hs, true);
  EXPECT_TRUE(y.isApprox(hs + x));
  ExpectGradientsMatch(CheckLayer(block, AwayFrom(x, {-3, 3}), 22), false);
}

TEST(Residual, ProjectionShortcutGradientMatchesFiniteDifferences) {
  const Shape in{2, 4, 4};
  Layers shortcut;
  shortcut.push_back(std::make_unique<Conv2d>(in, 3, 1, 2, 0, ConvOptions{.bias = false}));
  Residual block(std::make_unique<Sequential>(in, TwoLayers(in, 3, 2)),
                 std::make_unique<Sequential>(in, std::move(shortcut)));
  EXPECT_EQ(block.OutputShape(in), (Shape{3, 2, 2}));
  EXPECT_EQ(block.NumParams(), 3u * 2 * 9 + 6 + 3 * 2);
  EXPECT_EQ(block.NumBuffers(), 6u);
  ExpectGradientsMatch(CheckLayer(block, RandomMatrix(3, in.size(), 23), 24), true);
}

TEST(Concat, StacksBranchChannelsAndGradientMatches) {
  const Shape in{2, 3, 3};
  std::vector<std::unique_ptr<Sequential>> branches;
  Layers a, b;
  a.push_back(std::make_unique<Conv2d>(in, 2, 1, 1, 0));
  b.push_back(std::make_unique<Conv2d>(in, 3, 3, 1, 1));
  branches.push_back(std::make_unique<Sequential>(in, std::move(a)));
  branches.push_back(std::make_unique<Sequential>(in, std::move(b)));
  Concat cat(in, std::move(branches));
  EXPECT_EQ(cat.OutputShape(in), (Shape{5, 3, 3}));
  std::vector<float> params(cat.NumParams()), grads(params.size());
  cat.Bind(params.data(), grads.data());
  Rng rng(25);
  FillNormal(rng, 0.5f, params);
  const Matrix x = RandomMatrix(2, 18, 26);
  Matrix y;
  cat.Forward(x, y, true);
  // Branch a is a 1x1 conv: output channel 1 at pixel 4 of sample 1 is W[1,:] . x[:, 4] + b[1].
  const float want = params[2] * x(1, 4) + params[3] * x(1, 9 + 4) + params[5];
  EXPECT_NEAR(y(1, 9 + 4), want, 1e-5);
  ExpectGradientsMatch(CheckLayer(cat, x, 27, gradcheck::kLinearEps), true);
}

}  // namespace
}  // namespace p2p::ml
