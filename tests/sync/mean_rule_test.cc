// The one sample-weighted mean (sync/rules/mean.h) must give exactly the bits of the three
// copies it replaced, or peers and resumed runs would drift from what main computed before.
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "sync/rules/mean.h"
#include "sync/rules/rule.h"

namespace p2p::sync::rules {
namespace {

// The reference formulas, copied verbatim (modulo names) from before the kernel existed.
// sync/allgather_average.cc and sync/reduce_scatter_average.cc: zero weights skipped.
void OldStrategyMean(const std::vector<std::vector<float>>& g, const std::vector<uint32_t>& counts,
                     std::vector<float>& grad) {
  const size_t p = grad.size();
  uint64_t total = 0;
  for (uint32_t c : counts) total += c;
  std::fill(grad.begin(), grad.end(), 0.0f);
  for (size_t r = 0; r < g.size(); ++r) {
    const float w = static_cast<float>(static_cast<double>(counts[r]) / static_cast<double>(total));
    if (w == 0.0f) continue;
    for (size_t i = 0; i < p; ++i) grad[i] += w * g[r][i];
  }
}

// serverless_offload/process_pool.cc WeightedSum: every result added, none skipped.
void OldOffloadMean(const std::vector<std::vector<float>>& g, const std::vector<uint32_t>& counts,
                    std::vector<float>& grad) {
  uint64_t total_ = 0;
  for (uint32_t c : counts) total_ += c;
  std::fill(grad.begin(), grad.end(), 0.0f);
  for (size_t r = 0; r < g.size(); ++r) {
    const float w = static_cast<float>(double(counts[r]) / double(total_));
    for (size_t j = 0; j < grad.size(); ++j) grad[j] += w * g[r][j];
  }
}

bool SameBits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// Awkward values: ordinary ones, denormals (and products that underflow into them), signed
// zeros, and magnitudes near FLT_MAX whose sums overflow to infinity.
std::vector<float> AwkwardGradient(std::mt19937& rng, size_t p) {
  constexpr float kMax = std::numeric_limits<float>::max();
  constexpr float kDenorm = std::numeric_limits<float>::denorm_min();
  const float specials[] = {
      0.0f, -0.0f, kDenorm,  -kDenorm,    kDenorm * 7, 1e-39f,       -3e-39f, 1e-38f,
      kMax, -kMax, kMax / 3, 0.7f * kMax, 1.0f / 3.0f, -2.0f / 7.0f, 1e30f,   16777217.0f};
  std::uniform_int_distribution<int> pick(0, 3);
  std::uniform_int_distribution<size_t> special(0, std::size(specials) - 1);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> g(p);
  for (float& v : g) v = pick(rng) == 0 ? normal(rng) : specials[special(rng)];
  return g;
}

const std::vector<std::vector<uint32_t>> kCountPatterns = {
    {64, 64, 64, 64, 64},                     // equal
    {1, 7, 3, 1000, 13},                      // unequal, weights not representable
    {0, 5, 0, 2, 9},                          // peers without samples
    {4294967295u, 1, 3, 65536, 4294967295u},  // weights near 1 and near 2^-33
    {3, 0, 0, 0, 0},                          // one peer carries everything
};

TEST(MeanRuleTest, GivesExactlyTheBitsOfTheFormulasItReplaced) {
  constexpr size_t kP = 4099;  // odd: the vectorised loop's tail is covered too
  const auto rule = MakeRule("mean");
  ASSERT_TRUE(rule.ok()) << rule.status().ToString();
  std::mt19937 rng(2024);
  int compared = 0, nonzero = 0;
  for (const auto& pattern : kCountPatterns) {
    for (size_t w = 1; w <= pattern.size(); ++w) {
      const std::vector<uint32_t> counts(pattern.begin(), pattern.begin() + w);
      uint64_t total = 0;
      for (uint32_t c : counts) total += c;
      if (total == 0) continue;
      std::vector<std::vector<float>> grads;
      std::vector<Input> inputs;
      for (size_t r = 0; r < w; ++r) grads.push_back(AwkwardGradient(rng, kP));
      for (size_t r = 0; r < w; ++r) inputs.push_back({grads[r], counts[r]});

      std::vector<float> strategy_ref(kP), offload_ref(kP), got(kP, 42.0f), incremental(kP);
      OldStrategyMean(grads, counts, strategy_ref);
      OldOffloadMean(grads, counts, offload_ref);
      ASSERT_TRUE((*rule)->Aggregate(inputs, got).ok());
      MeanAccumulator mean(incremental, total);
      for (size_t r = 0; r < w; ++r) mean.Add(grads[r], counts[r]);

      EXPECT_TRUE(SameBits(got, strategy_ref)) << "W=" << w << " counts " << counts[0] << "...";
      EXPECT_TRUE(SameBits(incremental, strategy_ref)) << "W=" << w;
      // The offload copy never skipped zero weights; for finite inputs that changes no bit,
      // because a sum that starts at +0 is never -0 and x + (+-0) == x otherwise.
      EXPECT_TRUE(SameBits(got, offload_ref)) << "W=" << w << " (offload formula)";
      ++compared;
      nonzero += std::count_if(got.begin(), got.end(), [](float v) { return v != 0.0f; });
    }
  }
  EXPECT_EQ(compared, 24);  // 5 patterns x W=1..5, less {0} alone (no samples)
  EXPECT_GT(nonzero, 0) << "the inputs must exercise the arithmetic, not just zeros";
}

TEST(MeanRuleTest, IsTheSampleWeightedMean) {
  const std::vector<float> a = {1.0f, -4.0f}, b = {2.0f, 8.0f};
  const std::vector<Input> inputs = {{a, 1}, {b, 3}};
  std::vector<float> out(2);
  ASSERT_TRUE(MeanRule().Aggregate(inputs, out).ok());
  EXPECT_EQ(out, (std::vector<float>{1.75f, 5.0f}));
}

TEST(MeanRuleTest, RefusesMismatchedSizesAndNoSamples) {
  const std::vector<float> a = {1.0f, 2.0f}, short_one = {1.0f};
  std::vector<float> out(2);
  const std::vector<Input> mismatched = {{a, 1}, {short_one, 1}};
  Status s = MeanRule().Aggregate(mismatched, out);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("input 1 of the mean has 1 values, expected 2"), std::string::npos)
      << s.message();
  const std::vector<Input> empty = {{a, 0}, {a, 0}};
  s = MeanRule().Aggregate(empty, out);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("no input of the mean has samples"), std::string::npos);
}

TEST(RuleRegistryTest, KnowsEveryRuleAndNamesTheValidOnesForAnUnknownOne) {
  EXPECT_EQ(RuleNames(),
            (std::vector<std::string>{"mean", "median", "trimmed-mean", "krum", "multi-krum",
                                      "bulyan", "centered-clip", "geomedian"}));
  auto mean = MakeRule("mean");
  ASSERT_TRUE(mean.ok());
  EXPECT_EQ((*mean)->name(), "mean");
  EXPECT_EQ((*mean)->spec(), "mean");
  EXPECT_TRUE((*mean)->coordinatewise());
  auto unknown = MakeRule("krumm:f=1");
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(
      unknown.status().message().find("unknown aggregation rule 'krumm'; valid: mean, median"),
      std::string::npos)
      << unknown.status().message();
}

}  // namespace
}  // namespace p2p::sync::rules
