#include "ml/optimizer.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

namespace p2p::ml {
namespace {

using ::testing::HasSubstr;

// Expected values below are the torch.optim formulas evaluated in double (a plain transcription
// of the single-tensor update loops); the optimizer runs in float, so compare with a tolerance
// well above float rounding (~1e-7 at these magnitudes) and far below any formula mistake.
constexpr double kTol = 2e-6;

// The hand-checkable problem: three parameters and three fixed gradients (not from a loss, so
// each step depends only on the update rule).
const std::vector<float> kP0 = {1.0f, -2.0f, 0.5f};
const std::vector<std::vector<float>> kGrads = {
    {0.5f, -1.0f, 2.0f}, {1.0f, 1.0f, -1.0f}, {-0.5f, 0.25f, 0.5f}};

std::unique_ptr<Optimizer> MustCreate(const OptimizerOptions& options) {
  auto r = Optimizer::Create(options);
  P2P_CHECK(r.ok(), "{}", r.status().ToString());
  return std::move(r).value();
}

// Runs the three steps from kP0 and checks the parameters after each step against expected[i],
// reporting the largest difference.
void ExpectTrajectory(const OptimizerOptions& options,
                      const std::vector<std::vector<double>>& expected) {
  auto opt = MustCreate(options);
  std::vector<float> p = kP0;
  for (size_t step = 0; step < expected.size(); ++step) {
    opt->Step(p, kGrads[step]);
    double max_diff = 0;
    for (size_t i = 0; i < p.size(); ++i) {
      max_diff = std::max(max_diff, std::abs(static_cast<double>(p[i]) - expected[step][i]));
    }
    EXPECT_LE(max_diff, kTol) << options.name << " step " << step + 1
                              << ": max |actual - expected| = " << max_diff;
  }
}

TEST(OptimizerTest, SgdPlain) {
  // p -= 0.1 * g.  Step 1: {1 - 0.05, -2 + 0.1, 0.5 - 0.2}; step 2: {0.95 - 0.1, -1.9 - 0.1,
  // 0.3 + 0.1}; step 3: {0.85 + 0.05, -2 - 0.025, 0.4 - 0.05}.
  ExpectTrajectory({.name = "sgd", .lr = 0.1f},
                   {{0.95, -1.9, 0.3}, {0.85, -2.0, 0.4}, {0.9, -2.025, 0.35}});
}

TEST(OptimizerTest, SgdWeightDecayAddsToGradient) {
  // d = g + 0.1 * p.  Step 1: d = {0.5 + 0.1, -1 - 0.2, 2 + 0.05} = {0.6, -1.2, 2.05},
  // p = {0.94, -1.88, 0.295}.  Step 2: d = {1.094, 0.812, -0.9705}, p = {0.8306, -1.9612, 0.39205}.
  ExpectTrajectory(
      {.name = "sgd", .lr = 0.1f, .weight_decay = 0.1f},
      {{0.94, -1.88, 0.295}, {0.8306, -1.9612, 0.39205}, {0.872294, -1.966588, 0.3381295}});
}

TEST(OptimizerTest, SgdMomentumStartsBufferAtFirstGradient) {
  // buf1 = g1 = {0.5, -1, 2}, p = {0.95, -1.9, 0.3} (same as plain SGD: no dampening).
  // buf2 = 0.9 * buf1 + g2 = {1.45, 0.1, 0.8}, p = {0.805, -1.91, 0.22}.
  // buf3 = 0.9 * buf2 + g3 = {0.805, 0.34, 1.22}, p = {0.7245, -1.944, 0.098}.
  ExpectTrajectory({.name = "sgd", .lr = 0.1f, .momentum = 0.9f},
                   {{0.95, -1.9, 0.3}, {0.805, -1.91, 0.22}, {0.7245, -1.944, 0.098}});
}

TEST(OptimizerTest, SgdMomentumWithWeightDecay) {
  // Decay enters the gradient before the buffer.  Step 1: buf = d1 = {0.6, -1.2, 2.05}.
  // Step 2: d2 = g2 + 0.1 * {0.94, -1.88, 0.295} = {1.094, 0.812, -0.9705},
  // buf = 0.9 * buf + d2 = {1.634, -0.268, 0.8745}, p = {0.7766, -1.8532, 0.20755}.
  ExpectTrajectory(
      {.name = "sgd", .lr = 0.1f, .momentum = 0.9f, .weight_decay = 0.1f},
      {{0.94, -1.88, 0.295}, {0.7766, -1.8532, 0.20755}, {0.671774, -1.835548, 0.0767695}});
}

TEST(OptimizerTest, SgdNesterovLooksAhead) {
  // Step 1: buf = g1, update = g1 + 0.9 * buf = 1.9 * g1 = {0.95, -1.9, 3.8},
  // p = {0.905, -1.81, 0.12}.  Step 2: buf = {1.45, 0.1, 0.8}, update = g2 + 0.9 * buf =
  // {2.305, 1.09, -0.28}, p = {0.6745, -1.919, 0.148}.
  ExpectTrajectory({.name = "sgd", .lr = 0.1f, .momentum = 0.9f, .nesterov = true},
                   {{0.905, -1.81, 0.12}, {0.6745, -1.919, 0.148}, {0.65205, -1.9746, -0.0118}});
}

TEST(OptimizerTest, AdamBiasCorrectedSteps) {
  // Step 1: m = 0.1 g, v = 0.001 g^2, bc1 = 0.1, bc2 = 0.001, so mhat / sqrt(vhat) = sign(g) and
  // p -= 0.1 * g / (|g| + 1e-8): {0.9, -1.9, 0.4} (up to the eps).  Step 2, element 0:
  // m = 0.09 * 0.5 + 0.1 * 1 = 0.145, v = 0.999 * 0.00025 + 0.001 * 1 = 0.00124975,
  // bc1 = 0.19, bc2 = 0.001999, p = 0.9 - (0.1 / 0.19) * 0.145 / (sqrt(v / bc2) + 1e-8)
  // = 0.9 - 0.0965182 = 0.8034818.
  ExpectTrajectory({.name = "adam", .lr = 0.1f}, {{0.900000002, -1.9, 0.400000001},
                                                  {0.803481801, -1.90526316, 0.373366297},
                                                  {0.761472871, -1.9203978, 0.339323382}});
}

TEST(OptimizerTest, AdamWeightDecayIsL2InTheGradient) {
  // Step 1 still moves each element by lr * sign(g + 0.1 p) = 0.1; from step 2 on the decayed
  // gradient d = g + 0.1 p feeds both moments, e.g. element 1: d2 = 1 - 0.19 = 0.81.
  ExpectTrajectory({.name = "adam", .lr = 0.1f, .weight_decay = 0.1f},
                   {{0.900000002, -1.9, 0.4},
                    {0.80250297, -1.88611775, 0.370895146},
                    {0.751527658, -1.87810489, 0.334245559}});
}

TEST(OptimizerTest, AdamWDecaysParametersBeforeTheAdamStep) {
  // Step 1: p *= 1 - 0.1 * 0.1 = 0.99 -> {0.99, -1.98, 0.495}, then the plain Adam step of
  // -0.1 * sign(g): {0.89, -1.88, 0.395}.  The moments see the raw gradient, so later steps
  // equal plain Adam's update applied to the shrunk parameters: step 2 element 0 is
  // 0.89 * 0.99 - 0.0965182 = 0.7845818.
  ExpectTrajectory({.name = "adamw", .lr = 0.1f, .weight_decay = 0.1f},
                   {{0.890000002, -1.88, 0.395000001},
                    {0.784581801, -1.86646316, 0.364416297},
                    {0.734727053, -1.86293317, 0.326729219}});
}

TEST(OptimizerTest, RmsProp) {
  // Step 1: v = 0.01 g^2, sqrt(v) = 0.1 |g|, p -= 0.01 * g / (0.1 |g| + 1e-8) = 0.1 sign(g).
  // Step 2, element 0: v = 0.99 * 0.0025 + 0.01 * 1 = 0.012475, p = 0.9 - 0.01 / sqrt(v)
  // = 0.9 - 0.0895323 = 0.8104677.
  ExpectTrajectory({.name = "rmsprop", .lr = 0.01f}, {{0.90000002, -1.90000001, 0.400000005},
                                                      {0.810467732, -1.97088813, 0.444901328},
                                                      {0.85149788, -1.98842346, 0.42289091}});
}

TEST(OptimizerTest, RmsPropMomentumAndWeightDecay) {
  // The momentum buffer starts at zero (torch), so step 1 is buf = d / (sqrt(v) + eps) with
  // d = g + 0.1 p, i.e. 10 sign(d), and p -= 0.01 * buf: again a 0.1 move per element.
  // Step 2 accumulates: buf = 0.9 * buf + d2 / (sqrt(v2) + eps).
  ExpectTrajectory({.name = "rmsprop", .lr = 0.01f, .momentum = 0.9f, .weight_decay = 0.1f},
                   {{0.900000017, -1.90000001, 0.400000005},
                    {0.722293385, -1.86614047, 0.352584424},
                    {0.595050333, -1.84007795, 0.286699109}});
}

TEST(OptimizerTest, Adagrad) {
  // Step 1: sum = g^2, p -= 0.1 * g / |g| = 0.1 sign(g).  Step 2, element 0: sum = 0.25 + 1,
  // p = 0.9 - 0.1 / sqrt(1.25) = 0.9 - 0.0894427 = 0.8105573.
  ExpectTrajectory({.name = "adagrad", .lr = 0.1f}, {{0.9, -1.9, 0.4},
                                                     {0.810557281, -1.97071068, 0.44472136},
                                                     {0.85138211, -1.98811844, 0.422899571}});
}

TEST(OptimizerTest, AdagradWeightDecay) {
  // d = g + 0.1 p; step 1 is 0.1 sign(d); step 2 element 0: d1 = 0.6, d2 = 1 + 0.09 = 1.09,
  // p = 0.9 - 0.1 * 1.09 / sqrt(0.36 + 1.1881) = 0.8123954.
  ExpectTrajectory({.name = "adagrad", .lr = 0.1f, .weight_decay = 0.1f},
                   {{0.9, -1.9, 0.4},
                    {0.812395384, -1.95594729, 0.44240943},
                    {0.844293499, -1.95970245, 0.419032923}});
}

TEST(OptimizerTest, SetLrTakesEffectOnTheNextStep) {
  auto opt = MustCreate({.name = "sgd", .lr = 0.1f});
  std::vector<float> p = {1.0f};
  opt->set_lr(0.5f);
  opt->Step(p, std::vector<float>{1.0f});
  EXPECT_FLOAT_EQ(p[0], 0.5f);
  EXPECT_FLOAT_EQ(opt->lr(), 0.5f);
}

TEST(OptimizerTest, ZeroWeightDecayLeavesInfiniteParametersAlone) {
  // torch skips the decay term when wd == 0; computing g + 0 * p would turn inf into NaN.
  for (const std::string& name : Optimizer::Names()) {
    auto opt = MustCreate({.name = name, .lr = 0.1f});
    std::vector<float> p = {std::numeric_limits<float>::infinity(), 1.0f};
    opt->Step(p, std::vector<float>{1.0f, 1.0f});
    EXPECT_FALSE(std::isnan(p[0])) << name;
    EXPECT_FALSE(std::isnan(p[1])) << name;
  }
}

TEST(OptimizerTest, StepRejectsMismatchedSizes) {
  auto opt = MustCreate({.name = "adam"});
  std::vector<float> p(3, 1.0f);
  EXPECT_THROW(opt->Step(p, std::vector<float>(2, 0.0f)), InvariantError);
  opt->Step(p, std::vector<float>(3, 0.0f));
  std::vector<float> bigger(4, 1.0f);
  EXPECT_THROW(opt->Step(bigger, std::vector<float>(4, 0.0f)), InvariantError);
}

// --- Create() validation ---

TEST(OptimizerCreateTest, NamesAreTheRegistry) {
  EXPECT_THAT(Optimizer::Names(),
              ::testing::ElementsAre("sgd", "adam", "adamw", "rmsprop", "adagrad"));
  for (const std::string& name : Optimizer::Names()) {
    auto r = Optimizer::Create({.name = name, .lr = 0.03f});
    ASSERT_TRUE(r.ok()) << name << ": " << r.status().ToString();
    EXPECT_FLOAT_EQ((*r)->lr(), 0.03f);
  }
}

TEST(OptimizerCreateTest, UnknownNameListsValidNames) {
  auto r = Optimizer::Create({.name = "sgdd"});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr("'sgdd'"));
  for (const std::string& name : Optimizer::Names()) {
    EXPECT_THAT(r.status().message(), HasSubstr(name));
  }
}

struct BadOptions {
  const char* label;
  OptimizerOptions options;
  const char* expected;  // a substring naming the problem
};

class OptimizerBadOptionsTest : public ::testing::TestWithParam<BadOptions> {};

TEST_P(OptimizerBadOptionsTest, IsInvalidArgumentNamingTheField) {
  auto r = Optimizer::Create(GetParam().options);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr(GetParam().expected));
}

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

INSTANTIATE_TEST_SUITE_P(
    All, OptimizerBadOptionsTest,
    ::testing::Values(
        BadOptions{"ZeroLr", {.name = "sgd", .lr = 0.0f}, "lr must be > 0"},
        BadOptions{"NegativeLr", {.name = "adam", .lr = -0.1f}, "lr must be > 0"},
        BadOptions{"NaNLr", {.name = "adagrad", .lr = kNaN}, "lr must be > 0"},
        BadOptions{
            "NegativeWeightDecay", {.name = "adamw", .weight_decay = -1e-4f}, "weight_decay"},
        BadOptions{"NegativeMomentum", {.name = "sgd", .momentum = -0.9f}, "momentum must be >= 0"},
        BadOptions{"NesterovWithoutMomentum",
                   {.name = "sgd", .nesterov = true},
                   "nesterov requires momentum > 0"},
        BadOptions{
            "AdamMomentum", {.name = "adam", .momentum = 0.9f}, "adam does not take momentum"},
        BadOptions{"AdagradNesterov",
                   {.name = "adagrad", .nesterov = true},
                   "adagrad does not take nesterov"},
        BadOptions{"RmsPropNesterov",
                   {.name = "rmsprop", .momentum = 0.9f, .nesterov = true},
                   "rmsprop does not take nesterov"},
        BadOptions{"Beta1One", {.name = "adam", .beta1 = 1.0f}, "beta1 must be in [0, 1)"},
        BadOptions{"Beta2Negative", {.name = "adamw", .beta2 = -0.5f}, "beta2 must be in [0, 1)"},
        BadOptions{"NegativeEps", {.name = "rmsprop", .eps = -1e-8f}, "eps must be >= 0"},
        BadOptions{"NegativeAlpha", {.name = "rmsprop", .alpha = -0.99f}, "alpha must be >= 0"}),
    [](const auto& info) { return std::string(info.param.label); });

// --- SaveState / LoadState ---

// Configurations that between them create every kind of state buffer.
std::vector<OptimizerOptions> StatefulConfigs() {
  return {
      {.name = "sgd", .lr = 0.05f},
      {.name = "sgd", .lr = 0.05f, .momentum = 0.9f, .weight_decay = 1e-3f},
      {.name = "sgd", .lr = 0.05f, .momentum = 0.9f, .nesterov = true},
      {.name = "adam", .lr = 1e-3f, .weight_decay = 1e-4f},
      {.name = "adamw", .lr = 1e-3f, .weight_decay = 1e-2f},
      {.name = "rmsprop", .lr = 1e-3f},
      {.name = "rmsprop", .lr = 1e-3f, .momentum = 0.9f, .weight_decay = 1e-4f},
      {.name = "adagrad", .lr = 1e-2f, .weight_decay = 1e-4f},
  };
}

// A size that spans several update blocks and is not a multiple of any SIMD width.
constexpr size_t kN = 5003;

std::vector<float> InitialParams() {
  std::vector<float> p(kN);
  for (size_t i = 0; i < kN; ++i) p[i] = std::sin(0.1f * static_cast<float>(i));
  return p;
}

// A gradient that depends on the parameters, so any divergence between two runs propagates.
void FillGrad(std::span<const float> p, int step, std::span<float> g) {
  for (size_t i = 0; i < p.size(); ++i) {
    g[i] = 0.5f * p[i] + std::cos(0.37f * static_cast<float>(i) + static_cast<float>(step));
  }
}

void RunSteps(Optimizer& opt, std::span<float> p, int first, int last) {
  std::vector<float> g(p.size());
  for (int step = first; step < last; ++step) {
    FillGrad(p, step, g);
    opt.Step(p, g);
  }
}

bool BitEqual(std::span<const float> a, std::span<const float> b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

std::string ConfigName(const OptimizerOptions& o) {
  return fmt::format("{} momentum={} nesterov={} wd={}", o.name, o.momentum, o.nesterov,
                     o.weight_decay);
}

TEST(OptimizerStateTest, ResumeMatchesUninterruptedRunBitExactly) {
  for (const OptimizerOptions& options : StatefulConfigs()) {
    SCOPED_TRACE(ConfigName(options));
    auto straight = MustCreate(options);
    std::vector<float> p_straight = InitialParams();
    RunSteps(*straight, p_straight, 0, 3);
    straight->set_lr(options.lr * 0.5f);  // as a schedule would; the state must carry it
    RunSteps(*straight, p_straight, 3, 6);

    auto first = MustCreate(options);
    std::vector<float> p = InitialParams();
    RunSteps(*first, p, 0, 3);
    first->set_lr(options.lr * 0.5f);
    const Optimizer::State saved = first->SaveState();
    EXPECT_EQ(saved.step, 3);
    auto resumed = MustCreate(options);  // a fresh process would start from the options
    ASSERT_TRUE(resumed->LoadState(saved).ok());
    EXPECT_EQ(resumed->lr(), options.lr * 0.5f);
    RunSteps(*resumed, p, 3, 6);

    EXPECT_TRUE(BitEqual(p, p_straight));
    const Optimizer::State a = resumed->SaveState(), b = straight->SaveState();
    EXPECT_EQ(a.step, b.step);
    ASSERT_EQ(a.buffers.size(), b.buffers.size());
    for (size_t i = 0; i < a.buffers.size(); ++i) EXPECT_TRUE(BitEqual(a.buffers[i], b.buffers[i]));
  }
}

TEST(OptimizerStateTest, ResultDoesNotDependOnBufferAlignment) {
  // A resumed run lives in other allocations; Eigen's scalar head/tail and its packets must agree,
  // whatever the offset of the buffer from a SIMD boundary.
  for (const OptimizerOptions& options : StatefulConfigs()) {
    SCOPED_TRACE(ConfigName(options));
    auto reference = MustCreate(options);
    std::vector<float> p = InitialParams();
    RunSteps(*reference, p, 0, 4);
    for (size_t offset = 1; offset < 16; ++offset) {
      auto shifted = MustCreate(options);
      std::vector<float> storage(kN + offset);
      const std::vector<float> init = InitialParams();
      std::copy(init.begin(), init.end(), storage.begin() + static_cast<ptrdiff_t>(offset));
      std::span<float> q(storage.data() + offset, kN);
      RunSteps(*shifted, q, 0, 4);
      EXPECT_TRUE(BitEqual(p, q)) << "offset " << offset << " floats";
    }
  }
}

TEST(OptimizerStateTest, BufferLayoutIsDocumented) {
  const std::vector<std::pair<OptimizerOptions, size_t>> cases = {
      {{.name = "sgd"}, 0},     {{.name = "sgd", .momentum = 0.9f}, 1},
      {{.name = "adam"}, 2},    {{.name = "adamw"}, 2},
      {{.name = "rmsprop"}, 1}, {{.name = "rmsprop", .momentum = 0.9f}, 2},
      {{.name = "adagrad"}, 1},
  };
  for (const auto& [options, count] : cases) {
    auto opt = MustCreate(options);
    EXPECT_TRUE(opt->SaveState().buffers.empty()) << ConfigName(options) << " before any step";
    std::vector<float> p(3, 1.0f);
    opt->Step(p, std::vector<float>(3, 0.5f));
    const Optimizer::State s = opt->SaveState();
    EXPECT_EQ(s.step, 1);
    ASSERT_EQ(s.buffers.size(), count) << ConfigName(options);
    for (const auto& buffer : s.buffers) EXPECT_EQ(buffer.size(), 3u);
  }
}

TEST(OptimizerStateTest, StateSavedBeforeAnyStepLoadsAndResizesLazily) {
  auto opt = MustCreate({.name = "adam"});
  ASSERT_TRUE(opt->LoadState(opt->SaveState()).ok());
  std::vector<float> p(7, 1.0f);
  opt->Step(p, std::vector<float>(7, 1.0f));
  EXPECT_EQ(opt->SaveState().buffers[0].size(), 7u);
}

Optimizer::State AdamStateAfterOneStep(size_t n) {
  auto opt = MustCreate({.name = "adam"});
  std::vector<float> p(n, 1.0f);
  opt->Step(p, std::vector<float>(n, 0.5f));
  return opt->SaveState();
}

void ExpectLoadFails(Optimizer& opt, const Optimizer::State& state, const char* expected) {
  const Optimizer::State before = opt.SaveState();
  const Status s = opt.LoadState(state);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr(expected));
  const Optimizer::State after = opt.SaveState();  // a failed load changes nothing
  EXPECT_EQ(after.step, before.step);
  EXPECT_EQ(after.lr, before.lr);
  EXPECT_EQ(after.buffers, before.buffers);
}

TEST(OptimizerStateTest, LoadStateValidatesBuffers) {
  auto opt = MustCreate({.name = "adam"});
  std::vector<float> p(3, 1.0f);
  opt->Step(p, std::vector<float>(3, 1.0f));

  Optimizer::State s = AdamStateAfterOneStep(3);
  s.buffers.pop_back();
  ExpectLoadFails(*opt, s, "1 buffers, this optimizer keeps 2");

  s = AdamStateAfterOneStep(3);
  s.buffers[1].push_back(0.0f);
  ExpectLoadFails(*opt, s, "buffer 1 has 4 floats, buffer 0 has 3");

  ExpectLoadFails(*opt, AdamStateAfterOneStep(4), "buffers of 4 floats, earlier steps used 3");

  s = AdamStateAfterOneStep(3);
  s.buffers.clear();
  ExpectLoadFails(*opt, s, "step 1 but no buffers");

  s = AdamStateAfterOneStep(3);
  s.step = 0;
  ExpectLoadFails(*opt, s, "step 0 with 2 non-empty buffers");

  s = AdamStateAfterOneStep(3);
  s.step = -1;
  ExpectLoadFails(*opt, s, "step -1 < 0");

  s = AdamStateAfterOneStep(3);
  s.lr = 0.0f;
  ExpectLoadFails(*opt, s, "lr 0 is not a positive number");
}

TEST(OptimizerStateTest, FreshOptimizerAcceptsAnySizeThenEnforcesIt) {
  auto opt = MustCreate({.name = "adam"});
  ASSERT_TRUE(opt->LoadState(AdamStateAfterOneStep(5)).ok());
  std::vector<float> p(3, 1.0f);
  EXPECT_THROW(opt->Step(p, std::vector<float>(3, 1.0f)), InvariantError);
}

}  // namespace
}  // namespace p2p::ml
