// The robust aggregation rules (sync/rules/): hand-computed small cases, the properties the
// literature states for each, the preconditions and parameter errors, and bitwise determinism.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

#include "sync/rules/iterative.h"
#include "sync/rules/krum.h"
#include "sync/rules/mean.h"
#include "sync/rules/order_stats.h"
#include "sync/rules/rule.h"
#include "sync/rules/rule_params.h"

namespace p2p::sync::rules {
namespace {

using Grads = std::vector<std::vector<float>>;

std::vector<Input> Inputs(const Grads& g, std::vector<uint64_t> samples = {}) {
  std::vector<Input> in;
  for (size_t r = 0; r < g.size(); ++r) in.push_back({g[r], samples.empty() ? 1 : samples[r]});
  return in;
}

std::unique_ptr<Rule> Rule_(std::string_view spec) {
  auto rule = MakeRule(spec);
  EXPECT_TRUE(rule.ok()) << rule.status().ToString();
  return rule.ok() ? std::move(*rule) : nullptr;
}

std::vector<float> Apply(std::string_view spec, const Grads& g,
                         std::vector<uint64_t> samples = {}) {
  const auto rule = Rule_(spec);
  std::vector<float> out(g[0].size(), 42.0f);
  const Status s = rule->Aggregate(Inputs(g, samples), out);
  EXPECT_TRUE(s.ok()) << spec << ": " << s.ToString();
  return out;
}

// Columns of a 1-D set: {{a}, {b}, ...} from {a, b, ...}.
Grads Points(std::initializer_list<float> xs) {
  Grads g;
  for (float x : xs) g.push_back({x});
  return g;
}

Grads Random(std::mt19937& rng, size_t n, size_t p, float scale = 1.0f) {
  std::normal_distribution<float> normal(0.0f, scale);
  Grads g(n, std::vector<float>(p));
  for (auto& v : g)
    for (float& x : v) x = normal(rng);
  return g;
}

bool SameBits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

std::string ErrorOf(std::string_view spec) {
  auto rule = MakeRule(spec);
  return rule.ok() ? "(accepted)" : rule.status().message();
}

TEST(MedianRuleTest, OddAndEvenSetsHandComputed) {
  EXPECT_EQ(Apply("median", {{1, -1}, {5, 10}, {3, 2}}), (std::vector<float>{3, 2}));
  EXPECT_EQ(Apply("median", Points({1, 2, 3, 100})), std::vector<float>{2.5f});
  // An input without samples carries no gradient: {1, 2, 100} without the 100 is even.
  EXPECT_EQ(Apply("median", Points({1, 2, 100}), {1, 1, 0}), std::vector<float>{1.5f});
}

TEST(MedianRuleTest, OfAnOddSetIsAlwaysOneOfTheInputs) {
  std::mt19937 rng(7);
  const Grads g = Random(rng, 5, 999);
  const auto out = Apply("median", g);
  for (size_t i = 0; i < out.size(); ++i) {
    std::vector<float> col;
    for (const auto& v : g) col.push_back(v[i]);
    std::sort(col.begin(), col.end());
    ASSERT_EQ(out[i], col[2]) << "coordinate " << i;
  }
}

TEST(MedianRuleTest, TheMeanOfTwoHugeMiddleValuesDoesNotOverflow) {
  EXPECT_EQ(Apply("median", Points({-1e38f, 1e38f, 1e38f, 1e38f})), std::vector<float>{1e38f});
}

TEST(TrimmedMeanRuleTest, RemovesExactlyFloorBetaNFromEachEnd) {
  // beta = 0.2 of 5: one from each end.
  EXPECT_EQ(Apply("trimmed-mean:beta=0.2", Points({100, 1, 4, -50, 3})),
            std::vector<float>{8.0f / 3});
  // beta = 0.39 of 5 is still floor(1.95) = 1; beta = 0.4 of 5 trims 2: the median.
  EXPECT_EQ(Apply("trimmed-mean:beta=0.39", Points({100, 1, 4, -50, 3})),
            std::vector<float>{8.0f / 3});
  EXPECT_EQ(Apply("trimmed-mean:beta=0.4", Points({100, 1, 4, -50, 3})), std::vector<float>{3});
  // beta = 0.1 of 5 trims nothing: the unweighted mean.
  EXPECT_EQ(Apply("trimmed-mean:beta=0.1", Points({1, 2, 3, 4, 10})), std::vector<float>{4});
  const TrimmedMeanRule rule(0.2);
  EXPECT_EQ(rule.Trimmed(4), 0u);
  EXPECT_EQ(rule.Trimmed(5), 1u);
  EXPECT_EQ(rule.Trimmed(10), 2u);
  EXPECT_EQ(rule.Trimmed(14), 2u);
}

TEST(TrimmedMeanRuleTest, MatchesTheDefinitionOnRandomData) {
  std::mt19937 rng(11);
  const Grads g = Random(rng, 10, 257, 3.0f);
  const auto out = Apply("trimmed-mean:beta=0.25", g);  // floor(2.5) = 2 from each end
  for (size_t i = 0; i < out.size(); ++i) {
    std::vector<double> col;
    for (const auto& v : g) col.push_back(v[i]);
    std::sort(col.begin(), col.end());
    const double want = std::accumulate(col.begin() + 2, col.end() - 2, 0.0) / 6.0;
    ASSERT_EQ(out[i], static_cast<float>(want)) << "coordinate " << i;
  }
}

TEST(KrumRuleTest, PicksTheInputWithTheSmallestScoreHandComputed) {
  // f = 1 of 5: each score sums the 5 - 1 - 2 = 2 nearest squared distances.
  // 0: 1 + 4 = 5; 1: 1 + 1 = 2; 2: 1 + 1 = 2; 3: 1 + 4 = 5; 100: 9409 + 9604 = 19013.
  const std::vector<double> d2 = [] {
    const float x[] = {0, 1, 2, 3, 100};
    std::vector<double> d(25);
    for (int i = 0; i < 5; ++i)
      for (int j = 0; j < 5; ++j) d[i * 5 + j] = double(x[i] - x[j]) * double(x[i] - x[j]);
    return d;
  }();
  EXPECT_EQ(KrumScores(d2, 5, {0, 1, 2, 3, 4}, 1), (std::vector<double>{5, 2, 2, 5, 19013}));
  // The tie between 1 and 2 goes to the lower rank.
  EXPECT_EQ(Apply("krum:f=1", Points({0, 1, 2, 3, 100})), std::vector<float>{1});
  EXPECT_EQ(Apply("krum:f=1", Points({0, 2, 1, 3, 100})), std::vector<float>{2});
}

TEST(KrumRuleTest, OutputIsExactlyOneHonestInputUnderASignFlipper) {
  std::mt19937 rng(3);
  Grads g = Random(rng, 5, 1000);
  for (auto& v : g) v[0] += 5.0f;  // honest gradients share a direction
  for (float& x : g[3]) x *= -10.0f;
  const auto out = Apply("krum:f=1", g);
  int matches = 0;
  for (size_t r = 0; r < g.size(); ++r) matches += SameBits(out, g[r]);
  EXPECT_EQ(matches, 1);
  EXPECT_FALSE(SameBits(out, g[3]));
}

TEST(MultiKrumRuleTest, AveragesTheMLowestScoresAndIsTheMeanWithoutByzantines) {
  EXPECT_EQ(Apply("multi-krum:f=1,m=2", Points({0, 1, 2, 3, 100})), std::vector<float>{1.5f});
  // m defaults to n - f = 4: everything but the outlier, weighted by samples.
  EXPECT_EQ(Apply("multi-krum:f=1", Points({0, 1, 2, 3, 100}), {1, 1, 1, 1, 1}),
            std::vector<float>{1.5f});
  // f = 0, m = n: every input, so exactly the mean's bits.
  std::mt19937 rng(5);
  const Grads g = Random(rng, 4, 513);
  const std::vector<uint64_t> samples = {3, 64, 17, 1};
  EXPECT_TRUE(SameBits(Apply("multi-krum:f=0,m=4", g, samples), Apply("mean", g, samples)));
}

// Bulyan by its definition, written independently: repeated Krum by brute force, then per
// coordinate the beta values nearest the median.
std::vector<float> BulyanReference(const Grads& g, int f) {
  const size_t n = g.size(), theta = n - 2 * f, beta = theta - 2 * f;
  auto d2 = [&](size_t a, size_t b) {
    double s = 0;
    for (size_t i = 0; i < g[a].size(); ++i) s += std::pow(double(g[a][i]) - g[b][i], 2);
    return s;
  };
  std::vector<size_t> rest(n), picked;
  std::iota(rest.begin(), rest.end(), 0);
  while (picked.size() < theta) {
    size_t best = 0;
    double best_score = std::numeric_limits<double>::infinity();
    for (size_t a = 0; a < rest.size(); ++a) {
      std::vector<double> d;
      for (size_t b = 0; b < rest.size(); ++b)
        if (b != a) d.push_back(d2(rest[a], rest[b]));
      std::sort(d.begin(), d.end());
      const int k = std::max<int>(0, int(rest.size()) - f - 2);
      const double score = std::accumulate(d.begin(), d.begin() + k, 0.0);
      if (score < best_score) best_score = score, best = a;
    }
    picked.push_back(rest[best]);
    rest.erase(rest.begin() + best);
  }
  std::vector<float> out(g[0].size());
  for (size_t i = 0; i < out.size(); ++i) {
    std::vector<double> col;
    for (size_t r : picked) col.push_back(g[r][i]);
    std::sort(col.begin(), col.end());
    const double med = theta % 2 ? col[theta / 2] : (col[theta / 2 - 1] + col[theta / 2]) / 2;
    std::stable_sort(col.begin(), col.end(),
                     [&](double a, double b) { return std::abs(a - med) < std::abs(b - med); });
    std::sort(col.begin(), col.begin() + beta);
    out[i] = float(std::accumulate(col.begin(), col.begin() + beta, 0.0) / beta);
  }
  return out;
}

TEST(BulyanRuleTest, SelectsByRepeatedKrumThenTrimsAroundTheMedian) {
  // Hand-computed: Krum picks 2, then 3, 1, 4, 0 (the last with 0 neighbours: the lowest rank);
  // of {0, 1, 2, 3, 4} the 3 nearest the median 2 are {1, 2, 3}: mean 2. 1000 never counts.
  EXPECT_EQ(Apply("bulyan:f=1", Points({0, 1, 2, 3, 4, 5, 1000})), std::vector<float>{2});
  std::mt19937 rng(9);
  for (int trial = 0; trial < 5; ++trial) {
    Grads g = Random(rng, 7, 33);
    for (float& x : g[trial]) x *= -10.0f;
    const auto got = Apply("bulyan:f=1", g), want = BulyanReference(g, 1);
    for (size_t i = 0; i < got.size(); ++i) {
      ASSERT_NEAR(got[i], want[i], 1e-6f * (1 + std::abs(want[i]))) << "trial " << trial;
    }
  }
}

TEST(CenteredClipRuleTest, IsTheWeightedMeanForALargeTau) {
  std::mt19937 rng(13);
  const Grads g = Random(rng, 5, 777);
  const std::vector<uint64_t> samples = {64, 64, 10, 64, 3};
  const auto clipped = Apply("centered-clip:tau=1e20,iters=2", g, samples);
  const auto mean = Apply("mean", g, samples);
  for (size_t i = 0; i < mean.size(); ++i) ASSERT_NEAR(clipped[i], mean[i], 1e-6f) << i;
}

TEST(CenteredClipRuleTest, AnOutlierMovesTheCentreByAtMostWeightTimesTauPerStep) {
  // From the median 1 of {0, 1, 2, 1000, 1}: 0 and 2 pull equally, 1000 pulls by 0.2 * tau.
  const auto out = Apply("centered-clip:tau=0.5,iters=1", Points({0, 1, 2, 1000, 1}));
  EXPECT_NEAR(out[0], 1.0f + 0.2f * 0.5f, 1e-6f);
}

TEST(GeoMedianRuleTest, ConvergesToTheGeometricMedian) {
  // In 1-D the geometric median is the median.
  GeoMedianRule rule(1e-9, 1000);
  const Grads line = Points({0, 1, 10});
  std::vector<float> out(1);
  ASSERT_TRUE(rule.Aggregate(Inputs(line), out).ok());
  EXPECT_NEAR(out[0], 1.0f, 1e-4f);
  // Four corners of a square and an outlier on the diagonal: the outlier pulls with a unit
  // force whatever its distance, so moving it from 100 to 1e6 leaves the median where it was,
  // inside the square (the mean would follow it to 2e5).
  const Grads square = {{0, 0}, {2, 0}, {0, 2}, {2, 2}, {100, 100}};
  out.resize(2);
  ASSERT_TRUE(rule.Aggregate(Inputs(square), out).ok());
  EXPECT_GT(rule.last_iterations(), 1);
  Grads farther = square;
  farther[4] = {1e6f, 1e6f};
  std::vector<float> far_out(2);
  ASSERT_TRUE(rule.Aggregate(Inputs(farther), far_out).ok());
  for (int i = 0; i < 2; ++i) {
    EXPECT_GT(out[i], 1.0f);
    EXPECT_LT(out[i], 2.0f);
    EXPECT_NEAR(out[i], far_out[i], 1e-3f);
  }
  // The iteration cap holds.
  GeoMedianRule capped(0, 3);
  ASSERT_TRUE(capped.Aggregate(Inputs(square), out).ok());
  EXPECT_EQ(capped.last_iterations(), 3);
}

const char* kAllSpecs[] = {
    "mean",       "median",    "trimmed-mean:beta=0.2",        "krum:f=1", "multi-krum:f=1",
    "bulyan:f=1", "geomedian", "centered-clip:tau=0.1,iters=4"};

TEST(RulesTest, EveryRuleGivesTheSameBitsOnEveryCall) {
  std::mt19937 rng(17);
  const Grads g = Random(rng, 7, 4099);
  const std::vector<uint64_t> samples = {64, 64, 64, 64, 64, 64, 33};
  for (const char* spec : kAllSpecs) {
    const auto first = Apply(spec, g, samples);
    EXPECT_TRUE(SameBits(first, Apply(spec, g, samples))) << spec;
    // A fresh rule object, and inputs copied to other addresses: alignment changes nothing.
    Grads copy = g;
    EXPECT_TRUE(SameBits(first, Apply(spec, copy, samples))) << spec;
  }
}

TEST(RulesTest, CoordinatewiseRulesGiveTheSameBitsSliceBySlice) {
  std::mt19937 rng(19);
  const Grads g = Random(rng, 5, 1000);
  for (const char* spec : {"mean", "median", "trimmed-mean:beta=0.2"}) {
    const auto rule = Rule_(spec);
    ASSERT_TRUE(rule->coordinatewise()) << spec;
    const auto whole = Apply(spec, g);
    std::vector<float> sliced(1000);
    for (size_t begin = 0; begin < 1000; begin += 300) {
      const size_t len = std::min<size_t>(300, 1000 - begin);
      std::vector<Input> in;
      for (const auto& v : g) in.push_back({std::span<const float>(v).subspan(begin, len), 1});
      ASSERT_TRUE(rule->Aggregate(in, std::span(sliced).subspan(begin, len)).ok());
    }
    EXPECT_TRUE(SameBits(whole, sliced)) << spec;
  }
  for (const char* spec : {"krum", "multi-krum", "bulyan", "centered-clip", "geomedian"}) {
    EXPECT_FALSE(Rule_(spec)->coordinatewise()) << spec;
  }
}

TEST(RulesTest, SpecsAreCanonicalAndReadBack) {
  EXPECT_EQ(Rule_("krum")->spec(), "krum:f=1");
  EXPECT_EQ(Rule_("trimmed-mean")->spec(), "trimmed-mean:beta=0.1");
  EXPECT_EQ(Rule_("multi-krum:m=2")->spec(), "multi-krum:f=1,m=2");
  EXPECT_EQ(Rule_("centered-clip")->spec(), "centered-clip:iters=3,tau=0.1");
  EXPECT_EQ(Rule_("geomedian:tol=0.001")->spec(), "geomedian:iters=100,tol=0.001");
  for (const char* spec : kAllSpecs) {
    const std::string canonical = Rule_(spec)->spec();
    EXPECT_EQ(Rule_(canonical)->spec(), canonical);
  }
}

TEST(RulesTest, BadParametersAreNamed) {
  EXPECT_EQ(ErrorOf("krum:g=1"),
            "aggregation rule 'krum' has no parameter 'g' (its parameters: "
            "f (default 1))");
  EXPECT_EQ(ErrorOf("krum:f=1.5"),
            "aggregation rule 'krum': f=1.5 must be an integer in [0, 1000]");
  EXPECT_EQ(ErrorOf("krum:f=x"), "aggregation rule 'krum': f='x' is not a number");
  EXPECT_EQ(ErrorOf("krum:f"), "aggregation rule 'krum': 'f' is not key=value (e.g. krum:f=1)");
  EXPECT_EQ(ErrorOf("krum:f=1,f=2"), "aggregation rule 'krum': parameter 'f' is given twice");
  EXPECT_NE(ErrorOf("trimmed-mean:beta=0.5").find("beta=0.5 must be a number in [0, 0.49999"),
            std::string::npos)
      << ErrorOf("trimmed-mean:beta=0.5");
  EXPECT_EQ(ErrorOf("median:beta=0.1"),
            "aggregation rule 'median' has no parameter 'beta' (its parameters: none)");
  EXPECT_EQ(ErrorOf("centered-clip:tau=0"),
            "aggregation rule 'centered-clip': tau=0 must be a number in [1e-30, 1e+30]");
}

TEST(RulesTest, PreconditionsNameTheRuleAndTheNumbers) {
  EXPECT_EQ(Rule_("krum:f=1")->CheckCount(4).message(),
            "aggregation rule krum:f=1 needs n >= 2f + 3 = 5 inputs with samples, but there are 4 "
            "(lower f or add peers)");
  EXPECT_TRUE(Rule_("krum:f=1")->CheckCount(5).ok());
  EXPECT_EQ(
      Rule_("bulyan:f=1")->CheckCount(6).message(),
      "aggregation rule bulyan:f=1 needs n >= 4f + 3 = 7 inputs with samples, but there are 6 "
      "(lower f or add peers)");
  EXPECT_TRUE(Rule_("bulyan:f=1")->CheckCount(7).ok());
  EXPECT_FALSE(Rule_("multi-krum:f=1,m=5")->CheckCount(5).ok());
  EXPECT_TRUE(Rule_("multi-krum:f=1,m=4")->CheckCount(5).ok());
  // Aggregate checks the inputs that have samples, not the run's size.
  std::vector<float> out(1);
  const Grads g = Points({0, 1, 2, 3, 4});
  const Status s = Rule_("krum:f=1")->Aggregate(Inputs(g, {1, 1, 1, 1, 0}), out);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("but there are 4"), std::string::npos) << s.message();
}

TEST(RulesTest, RobustRulesRefuseNonFiniteInputsNamingThem) {
  for (const char* spec : kAllSpecs) {
    if (std::string_view(spec) == "mean") continue;  // the strategies' decoders guard it
    for (float bad :
         {std::numeric_limits<float>::quiet_NaN(), -std::numeric_limits<float>::infinity()}) {
      Grads g = Points({0, 1, 2, 3, 4, 5, 6});
      g[4][0] = bad;
      std::vector<float> out(1);
      const Status s = Rule_(spec)->Aggregate(Inputs(g), out);
      EXPECT_EQ(s.code(), StatusCode::kDataLoss) << spec;
      EXPECT_NE(s.message().find("input 4 of"), std::string::npos) << s.message();
      EXPECT_NE(s.message().find("non-finite value"), std::string::npos) << s.message();
    }
  }
}

TEST(RulesTest, RobustRulesRefuseMismatchedSizesAndNoSamples) {
  for (const char* spec : kAllSpecs) {
    std::vector<float> out(2);
    const Grads mismatched = {{1, 2}, {1}, {1, 2}, {1, 2}, {1, 2}, {1, 2}, {1, 2}};
    EXPECT_EQ(Rule_(spec)->Aggregate(Inputs(mismatched), out).code(), StatusCode::kInvalidArgument)
        << spec;
    const Grads ok = Grads(7, {1, 2});
    EXPECT_EQ(Rule_(spec)->Aggregate(Inputs(ok, std::vector<uint64_t>(7, 0)), out).code(),
              StatusCode::kInvalidArgument)
        << spec;
  }
}

}  // namespace
}  // namespace p2p::sync::rules
