// SlicedEncoder (sync/sliced_encoder.h): error feedback kept per coordinate while the payloads
// are per slice, as GradientEncoder keeps it for one payload.
#include "sync/sliced_encoder.h"

#include <gtest/gtest.h>

#include <cmath>

namespace p2p::sync {
namespace {

std::shared_ptr<const codecs::Codec> Make(const codecs::CodecConfig& config) {
  auto codec = codecs::MakeCodec(config);
  EXPECT_TRUE(codec.ok()) << codec.status().ToString();
  return std::shared_ptr<const codecs::Codec>(std::move(*codec));
}

// One round over the window [offset, offset + values.size()): the window split into two slices,
// the first encoded and decoded as a receiver would, the second kept exact. Returns what the
// coordinates were received as.
std::vector<float> Round(SlicedEncoder& e, const std::vector<float>& values, size_t offset,
                         size_t total, bool feedback) {
  e.Prepare(values, offset, total, feedback);
  const size_t n = values.size(), half = n / 2;
  std::vector<std::byte> payload;
  EXPECT_TRUE(e.EncodeSlice(offset, half, 0, payload).ok());
  std::vector<float> got(n);
  EXPECT_TRUE(e.codec().Decode(payload, std::span(got).first(half)).ok());
  e.Transmitted(offset, std::span(got).first(half));
  const auto prepared = e.prepared();
  std::copy(prepared.begin() + half, prepared.end(), got.begin() + half);
  e.Kept(offset + half, n - half);
  return got;
}

// Conservation: what was received plus what is still held equals everything that came in, and
// the encoded slice's coordinates do go out eventually (top-k 10% of 50 values a round).
TEST(SlicedEncoderTest, TopkFeedbackConservesEveryCoordinatesMass) {
  SlicedEncoder e(Make({"topk", {{"ratio", 0.1}}}));
  std::vector<float> g(100);
  for (size_t i = 0; i < g.size(); ++i) g[i] = std::pow(10.0f, -2.0f * float(i) / 99.0f);
  std::vector<double> received(g.size(), 0.0);
  const int rounds = 2000;
  for (int t = 0; t < rounds; ++t) {
    const auto got = Round(e, g, 0, g.size(), true);
    for (size_t i = 0; i < g.size(); ++i) received[i] += got[i];
  }
  ASSERT_EQ(e.residual().size(), g.size());
  for (size_t i = 0; i < g.size(); ++i) {
    const double total = double(rounds) * g[i];
    EXPECT_NEAR(received[i] + e.residual()[i], total, 1e-3 * total) << i;
    if (i >= 50) EXPECT_EQ(e.residual()[i], 0.0f) << "kept coordinates carry no residual";
    EXPECT_NEAR(received[i] / total, 1.0, 0.1) << i;
  }
}

// Without feedback (a gradient with no weight) the values go out as they are and the residual
// waits for a round that counts.
TEST(SlicedEncoderTest, NoFeedbackLeavesTheResidualAlone) {
  SlicedEncoder e(Make({"topk", {{"ratio", 0.1}}}));
  std::vector<float> g(20, 1.0f);
  Round(e, g, 0, g.size(), true);
  const std::vector<float> before(e.residual().begin(), e.residual().end());
  const auto got = Round(e, std::vector<float>(20, 2.0f), 0, g.size(), false);
  EXPECT_EQ(std::vector<float>(e.residual().begin(), e.residual().end()), before);
  for (size_t i = 10; i < 20; ++i) EXPECT_EQ(got[i], 2.0f) << "no residual added";
}

// A window that moves (another slice after a view change) keeps the residual of coordinates it
// still covers and drops the rest.
TEST(SlicedEncoderTest, AMovedWindowDropsTheResidualItLeft) {
  SlicedEncoder e(Make({"topk", {{"ratio", 0.1}}}));
  const size_t total = 40;
  std::vector<float> g(20);  // decreasing: the first coordinate of a slice is its top 10%
  for (size_t i = 0; i < g.size(); ++i) g[i] = 2.0f - 0.01f * float(i);
  Round(e, g, 0, total, true);  // window [0, 20)
  ASSERT_NE(e.residual()[1], 0.0f);
  const float kept = e.residual()[12];  // coordinates [10, 20) were kept exact: 0
  EXPECT_EQ(kept, 0.0f);
  Round(e, g, 5, total, true);  // window [5, 25)
  for (size_t i = 0; i < 5; ++i) EXPECT_EQ(e.residual()[i], 0.0f) << i;
  EXPECT_NE(e.residual()[6], 0.0f);  // still covered: its residual grew
}

TEST(SlicedEncoderTest, RestoreRefusesStateTheCodecCannotHold) {
  SlicedEncoder qsgd(Make({"qsgd", {}}));
  EXPECT_EQ(qsgd.Restore({1.0f}, {}).code(), StatusCode::kInvalidArgument);
  SlicedEncoder topk(Make({"topk", {}}));
  EXPECT_EQ(topk.Restore({1.0f}, {1.0f}).code(), StatusCode::kInvalidArgument);  // no momentum
  EXPECT_EQ(topk.Restore({NAN}, {}).code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(topk.Restore({1.0f, 2.0f}, {}).ok());
  EXPECT_EQ(topk.residual().size(), 2u);
}

}  // namespace
}  // namespace p2p::sync
