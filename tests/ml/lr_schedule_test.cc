#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <limits>
#include <memory>
#include <vector>

#include "ml/optimizer.h"

namespace p2p::ml {
namespace {

using ::testing::HasSubstr;

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

std::unique_ptr<Optimizer> Sgd(float lr) {
  auto r = Optimizer::Create({.name = "sgd", .lr = lr});
  P2P_CHECK(r.ok(), "{}", r.status().ToString());
  return std::move(r).value();
}

// Feeds the losses one epoch at a time and returns the lr after each.
std::vector<float> LrAfterEach(ReduceLrOnPlateau& plateau, Optimizer& opt,
                               const std::vector<double>& losses) {
  std::vector<float> lrs;
  for (double loss : losses) lrs.push_back(plateau.Step(loss, opt));
  return lrs;
}

TEST(ReduceLrOnPlateauTest, ReducesAfterPatiencePlusOneBadEpochs) {
  ReduceLrOnPlateau plateau({.factor = 0.1f, .patience = 2});
  auto opt = Sgd(1.0f);
  // Epoch 1 sets best; equal losses are bad epochs 1, 2, 3; the third exceeds patience 2.
  // The count then restarts: three more bad epochs for the next reduction.
  EXPECT_THAT(LrAfterEach(plateau, *opt, {1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0}),
              ::testing::Pointwise(::testing::FloatEq(),
                                   std::vector<float>{1.0f, 1.0f, 1.0f, 0.1f, 0.1f, 0.1f, 0.01f}));
  EXPECT_FLOAT_EQ(opt->lr(), 0.01f);
}

TEST(ReduceLrOnPlateauTest, ImprovementResetsBadEpochs) {
  ReduceLrOnPlateau plateau({.patience = 2});
  auto opt = Sgd(1.0f);
  LrAfterEach(plateau, *opt, {1.0, 1.0, 1.0});  // two bad epochs
  EXPECT_EQ(plateau.state().bad_epochs, 2);
  plateau.Step(0.5, *opt);
  EXPECT_EQ(plateau.state().bad_epochs, 0);
  EXPECT_DOUBLE_EQ(plateau.state().best, 0.5);
  LrAfterEach(plateau, *opt, {0.6, 0.5});
  EXPECT_FLOAT_EQ(opt->lr(), 1.0f);
}

TEST(ReduceLrOnPlateauTest, ThresholdIsRelativeToBest) {
  // Better means loss < best * (1 - 1e-4). With patience 0 one bad epoch reduces the lr.
  const std::vector<std::pair<double, bool>> cases = {
      {1.0, true},      // equal
      {0.99995, true},  // improved by 5e-5 relative: not enough
      {0.9998, false},  // improved by 2e-4 relative
  };
  for (const auto& [second, reduces] : cases) {
    ReduceLrOnPlateau plateau({.patience = 0});
    auto opt = Sgd(1.0f);
    plateau.Step(1.0, *opt);
    EXPECT_FLOAT_EQ(plateau.Step(second, *opt), reduces ? 0.1f : 1.0f) << "second " << second;
  }
  // Scaled: at best 100 the margin is 0.01.
  ReduceLrOnPlateau plateau({.patience = 0});
  auto opt = Sgd(1.0f);
  plateau.Step(100.0, *opt);
  EXPECT_FLOAT_EQ(plateau.Step(99.995, *opt), 0.1f);
  EXPECT_FLOAT_EQ(plateau.Step(99.98, *opt), 0.1f);
  EXPECT_DOUBLE_EQ(plateau.state().best, 99.98);
}

TEST(ReduceLrOnPlateauTest, NeverGoesBelowMinLr) {
  ReduceLrOnPlateau plateau({.factor = 0.1f, .patience = 0, .min_lr = 1e-6f});
  auto opt = Sgd(1e-5f);
  plateau.Step(1.0, *opt);
  EXPECT_FLOAT_EQ(plateau.Step(1.0, *opt), 1e-6f);  // 1e-5 * 0.1 = 1e-6
  EXPECT_FLOAT_EQ(plateau.Step(1.0, *opt), 1e-6f);  // max(1e-7, 1e-6)
  EXPECT_EQ(plateau.state().bad_epochs, 0);         // reset even though nothing changed
}

TEST(ReduceLrOnPlateauTest, SkipsChangesSmallerThanEps) {
  // new = max(1.005e-7, 1e-6) = 1e-6; old - new = 5e-9 <= torch's eps 1e-8: lr left alone.
  ReduceLrOnPlateau plateau({.patience = 0, .min_lr = 1e-6f});
  auto opt = Sgd(1.005e-6f);
  plateau.Step(1.0, *opt);
  EXPECT_EQ(plateau.Step(1.0, *opt), 1.005e-6f);
}

TEST(ReduceLrOnPlateauTest, DefaultsAreTorchs) {
  // factor 0.1, patience 5: five bad epochs are tolerated, the sixth reduces.
  ReduceLrOnPlateau plateau;
  auto opt = Sgd(0.01f);
  EXPECT_THAT(LrAfterEach(plateau, *opt, {2.0, 2.0, 2.0, 2.0, 2.0, 2.0}), ::testing::Each(0.01f));
  EXPECT_FLOAT_EQ(plateau.Step(2.0, *opt), 0.001f);
}

TEST(ReduceLrOnPlateauTest, NaNIsABadEpochAndNeverBecomesBest) {
  ReduceLrOnPlateau plateau({.patience = 0});
  auto opt = Sgd(1.0f);
  EXPECT_FLOAT_EQ(plateau.Step(kNaN, *opt), 0.1f);  // torch: NaN < inf is false
  EXPECT_FALSE(plateau.state().has_best);
  EXPECT_FLOAT_EQ(plateau.Step(5.0, *opt), 0.1f);  // first real loss beats the unset best
  EXPECT_DOUBLE_EQ(plateau.state().best, 5.0);
  EXPECT_FLOAT_EQ(plateau.Step(kNaN, *opt), 0.01f);
  EXPECT_DOUBLE_EQ(plateau.state().best, 5.0);
}

TEST(ReduceLrOnPlateauTest, RestoredStateContinuesTheSameWay) {
  const std::vector<double> losses = {1.0, 0.9, 0.95, 0.95, 0.95, 0.95, 0.95, 0.95};
  ReduceLrOnPlateau straight({.patience = 2});
  auto opt_a = Sgd(1.0f);
  const std::vector<float> expected = LrAfterEach(straight, *opt_a, losses);

  ReduceLrOnPlateau first({.patience = 2});
  auto opt_b = Sgd(1.0f);
  std::vector<float> got = LrAfterEach(first, *opt_b, {losses.begin(), losses.begin() + 4});
  ReduceLrOnPlateau resumed({.patience = 2});
  resumed.set_state(first.state());
  for (size_t i = 4; i < losses.size(); ++i) got.push_back(resumed.Step(losses[i], *opt_b));
  EXPECT_EQ(got, expected);
}

TEST(ReduceLrOnPlateauTest, BadOptionsNameTheField) {
  using O = ReduceLrOnPlateau::Options;
  EXPECT_THAT(O{.factor = 1.0f}.Validate().message(), HasSubstr("factor must be in (0, 1)"));
  EXPECT_THAT(O{.factor = 0.0f}.Validate().message(), HasSubstr("factor"));
  EXPECT_THAT(O{.patience = -1}.Validate().message(), HasSubstr("patience must be >= 0"));
  EXPECT_THAT(O{.min_lr = -1e-6f}.Validate().message(), HasSubstr("min_lr must be >= 0"));
  EXPECT_THAT(O{.threshold = -1e-4f}.Validate().message(), HasSubstr("threshold must be >= 0"));
  EXPECT_EQ(O{.factor = 2.0f}.Validate().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(O{}.Validate().ok());
  EXPECT_THROW(ReduceLrOnPlateau(O{.factor = 2.0f}), InvariantError);
}

// --- EarlyStopping ---

std::vector<bool> StopsAfterEach(EarlyStopping& stopping, const std::vector<double>& losses) {
  std::vector<bool> stops;
  for (double loss : losses) stops.push_back(stopping.ShouldStop(loss));
  return stops;
}

TEST(EarlyStoppingTest, StopsAfterPatienceEpochsWithoutImprovement) {
  EarlyStopping stopping({.patience = 3});
  // counters: set, 0, 1 (equal), 2, 0, 1, 2, 3
  EXPECT_EQ(StopsAfterEach(stopping, {1.0, 0.9, 0.9, 0.95, 0.8, 0.8, 0.85, 0.81}),
            (std::vector<bool>{false, false, false, false, false, false, false, true}));
  EXPECT_EQ(stopping.state().counter, 3);
  EXPECT_DOUBLE_EQ(stopping.state().best, 0.8);
  EXPECT_TRUE(stopping.ShouldStop(0.9));  // stays stopped while nothing improves
}

TEST(EarlyStoppingTest, FirstEpochOnlySetsBest) {
  EarlyStopping stopping({.patience = 1});
  EXPECT_FALSE(stopping.ShouldStop(10.0));
  EXPECT_TRUE(stopping.state().has_best);
  EXPECT_EQ(stopping.state().counter, 0);
  EXPECT_TRUE(stopping.ShouldStop(10.0));  // min_delta 0: an equal loss is not an improvement
}

TEST(EarlyStoppingTest, MinDeltaFollowsTheStudysRule) {
  // val - best < min_delta counts as an improvement, even when val is slightly worse.
  EarlyStopping stopping({.patience = 2, .min_delta = 0.1});
  EXPECT_FALSE(stopping.ShouldStop(1.0));
  EXPECT_FALSE(stopping.ShouldStop(1.05));  // 0.05 < 0.1: best becomes 1.05, counter 0
  EXPECT_DOUBLE_EQ(stopping.state().best, 1.05);
  EXPECT_EQ(stopping.state().counter, 0);
  EXPECT_FALSE(stopping.ShouldStop(1.2));  // 0.15: counter 1
  EXPECT_TRUE(stopping.ShouldStop(1.16));  // 0.11: counter 2 = patience
  EXPECT_DOUBLE_EQ(stopping.state().best, 1.05);
}

TEST(EarlyStoppingTest, NaNCountsAsNoImprovement) {
  EarlyStopping stopping({.patience = 2});
  EXPECT_EQ(StopsAfterEach(stopping, {1.0, kNaN, kNaN}), (std::vector<bool>{false, false, true}));
  EXPECT_DOUBLE_EQ(stopping.state().best, 1.0);
}

TEST(EarlyStoppingTest, RestoredStateContinuesTheSameWay) {
  EarlyStopping first({.patience = 3});
  StopsAfterEach(first, {1.0, 1.1, 1.2});
  EarlyStopping resumed({.patience = 3});
  resumed.set_state(first.state());
  EXPECT_TRUE(resumed.ShouldStop(1.0));  // counter 2 -> 3
}

TEST(EarlyStoppingTest, BadOptionsNameTheField) {
  using O = EarlyStopping::Options;
  EXPECT_THAT(O{.patience = 0}.Validate().message(), HasSubstr("patience must be >= 1"));
  EXPECT_THAT(O{.min_delta = -0.1}.Validate().message(), HasSubstr("min_delta must be >= 0"));
  EXPECT_EQ(O{.min_delta = kNaN}.Validate().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(O{}.Validate().ok());
  EXPECT_THROW(EarlyStopping(O{.patience = 0}), InvariantError);
}

}  // namespace
}  // namespace p2p::ml
