// Error feedback (GradientEncoder): with top-k, what is not sent is kept and added to the next
// gradient, so every coordinate's mass is transmitted eventually.
#include <gtest/gtest.h>

#include <cmath>

#include "sync/codecs/codec.h"

namespace p2p::sync::codecs {
namespace {

std::shared_ptr<const Codec> Make(const CodecConfig& config) {
  auto codec = MakeCodec(config);
  EXPECT_TRUE(codec.ok()) << codec.status().ToString();
  return std::shared_ptr<const Codec>(std::move(*codec));
}

// One round: encode `grad`, decode our own payload as every receiver would.
std::vector<float> Round(GradientEncoder& encoder, const std::vector<float>& grad, bool feedback) {
  std::vector<std::byte> payload;
  EXPECT_TRUE(encoder.Encode(grad, 0, feedback, payload).ok());
  std::vector<float> decoded(grad.size());
  EXPECT_TRUE(encoder.DecodeOwn(payload, decoded).ok());
  return decoded;
}

// The same gradient every round: 100 coordinates whose magnitudes span two orders, so top-5%
// (five coordinates a round) alone would send only the five largest, forever.
std::vector<float> Skewed() {
  std::vector<float> g(100);
  for (size_t i = 0; i < g.size(); ++i) {
    g[i] = (i % 2 ? -1.0f : 1.0f) * std::pow(10.0f, -2.0f * float(i) / 99.0f);
  }
  return g;
}

// With feedback a coordinate's residual grows by |g_i| a round until it is among the k largest;
// then it is sent whole and starts again from zero. The k sent a round carry away about
// sum |g| = 21.8 a round, so the residuals level off near L = 21.8 / k = 4.4: the smallest
// coordinate (0.01) goes out about every 440 rounds. After T = 20000 rounds what is still held is
// at most ~L, i.e. ~2% of the smallest coordinate's total T * 0.01 = 200.
TEST(ErrorFeedbackTest, TopkTransmitsEveryCoordinatesMassEventually) {
  GradientEncoder encoder(Make({"topk", {{"ratio", 0.05}}}));  // ef=1 is the default
  ASSERT_TRUE(encoder.codec().error_feedback());
  const auto g = Skewed();
  const int rounds = 20000;
  std::vector<double> sent(g.size(), 0.0);
  std::vector<int> times(g.size(), 0);
  for (int t = 0; t < rounds; ++t) {
    const auto d = Round(encoder, g, true);
    for (size_t i = 0; i < g.size(); ++i) {
      sent[i] += d[i];
      times[i] += d[i] != 0;
    }
  }
  const auto residual = encoder.residual();
  for (size_t i = 0; i < g.size(); ++i) {
    const double total = double(rounds) * g[i];
    EXPECT_GE(times[i], 10) << "coordinate " << i << " was (almost) never sent";
    // Conservation: what was sent plus what is still held is everything that came in.
    EXPECT_NEAR(sent[i] + residual[i], total, 1e-3 * std::fabs(total)) << i;
    // What is held stays bounded, so the transmitted share tends to 1.
    EXPECT_LE(std::fabs(residual[i]), 10.0) << i;
    EXPECT_NEAR(sent[i] / total, 1.0, 0.05) << "coordinate " << i << " sent " << times[i];
  }
}

TEST(ErrorFeedbackTest, WithoutFeedbackSmallCoordinatesAreNeverSent) {
  // The contrast that makes the test above meaningful.
  GradientEncoder encoder(Make({"topk", {{"ratio", 0.05}, {"ef", 0}}}));
  const auto g = Skewed();
  std::vector<double> sent(g.size(), 0.0);
  for (int t = 0; t < 1000; ++t) {
    const auto d = Round(encoder, g, true);
    for (size_t i = 0; i < g.size(); ++i) sent[i] += d[i];
  }
  for (size_t i = 0; i < 5; ++i) EXPECT_NE(sent[i], 0.0) << i;
  for (size_t i = 5; i < g.size(); ++i) EXPECT_EQ(sent[i], 0.0) << i;
  EXPECT_TRUE(encoder.residual().empty());
}

TEST(ErrorFeedbackTest, ARoundWithoutWeightKeepsTheResidual) {
  GradientEncoder encoder(Make({"topk", {{"ratio", 0.01}}}));
  const auto g = Skewed();
  Round(encoder, g, true);
  const std::vector<float> before(encoder.residual().begin(), encoder.residual().end());
  const std::vector<float> zeros(g.size(), 0.0f);
  const auto d = Round(encoder, zeros, false);  // a peer without samples: sends zeros
  for (float v : d) EXPECT_EQ(v, 0.0f);
  EXPECT_EQ(std::vector<float>(encoder.residual().begin(), encoder.residual().end()), before);
}

// Momentum correction: the sender compresses the velocity u = m u + g (plus the residual). With
// nothing dropped (ratio 1) that is exactly the velocity, so plain SGD on the average of the sent
// values is momentum SGD.
TEST(ErrorFeedbackTest, MomentumCorrectionSendsTheVelocity) {
  GradientEncoder encoder(Make({"topk", {{"ratio", 1.0}, {"momentum", 0.9}}}));
  EXPECT_EQ(encoder.codec().momentum(), 0.9);
  const auto g = Skewed();
  std::vector<float> u(g.size(), 0.0f);
  for (int t = 0; t < 5; ++t) {
    const auto d = Round(encoder, g, true);
    for (size_t i = 0; i < g.size(); ++i) u[i] = 0.9f * u[i] + g[i];
    EXPECT_EQ(d, u) << "round " << t;
  }
  // A round without weight neither sends the velocity nor advances it.
  const std::vector<float> zeros(g.size(), 0.0f);
  const auto d = Round(encoder, zeros, false);
  for (float v : d) EXPECT_EQ(v, 0.0f);
  EXPECT_EQ(std::vector<float>(encoder.velocity().begin(), encoder.velocity().end()), u);
}

TEST(ErrorFeedbackTest, MomentumCorrectionConservesTheMomentumMass) {
  // With top-5%, what was sent plus what is held equals the sum of the velocities: the same total
  // step as momentum SGD, only delayed.
  GradientEncoder encoder(Make({"topk", {{"ratio", 0.05}, {"momentum", 0.5}}}));
  const auto g = Skewed();
  std::vector<double> sent(g.size(), 0.0), velocity_sum(g.size(), 0.0);
  std::vector<double> u(g.size(), 0.0);
  for (int t = 0; t < 5000; ++t) {
    const auto d = Round(encoder, g, true);
    for (size_t i = 0; i < g.size(); ++i) {
      u[i] = 0.5 * u[i] + g[i];
      velocity_sum[i] += u[i];
      sent[i] += d[i];
    }
  }
  for (size_t i = 0; i < g.size(); ++i) {
    EXPECT_NEAR(sent[i] + encoder.residual()[i], velocity_sum[i], 1e-3 * std::fabs(velocity_sum[i]))
        << i;
    EXPECT_NE(sent[i], 0.0) << i;
  }
}

TEST(ErrorFeedbackTest, QuantisersCanUseItToo) {
  // ef=1 on a deterministic codec: the residual is exactly the rounding error of the last round.
  GradientEncoder encoder(Make({"uint8", {{"ef", 1}, {"block", 64}}}));
  std::vector<float> g(64);
  for (size_t i = 0; i < g.size(); ++i) g[i] = std::sin(float(i) * 0.37f);
  const auto d = Round(encoder, g, true);
  for (size_t i = 0; i < g.size(); ++i) EXPECT_EQ(encoder.residual()[i], g[i] - d[i]);
}

}  // namespace
}  // namespace p2p::sync::codecs
