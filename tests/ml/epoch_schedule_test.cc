// The epoch learning-rate schedules: values against PyTorch's formulas, warmup, scaling, and the
// refusals of bad options.
#include "ml/epoch_schedule.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <numbers>

namespace p2p::ml {
namespace {

using ::testing::HasSubstr;

std::vector<float> Lrs(const EpochScheduleOptions& o, float lr, int peers, int epochs) {
  EpochSchedule s(o, lr, peers, epochs);
  std::vector<float> out;
  for (int e = 1; e <= epochs; ++e) out.push_back(s.LrFor(e).value_or(-1.0f));
  return out;
}

TEST(EpochScheduleTest, StepDecaysEveryStepSizeEpochs) {
  // torch StepLR(step_size=2, gamma=0.5) over 5 epochs: 1, 1, .5, .5, .25
  EXPECT_THAT(Lrs({.schedule = "step", .step_size = 2, .gamma = 0.5f}, 1.0f, 1, 5),
              ::testing::ElementsAre(1.0f, 1.0f, 0.5f, 0.5f, 0.25f));
}

TEST(EpochScheduleTest, MultistepDecaysAtEachMilestone) {
  // torch MultiStepLR(milestones=[2, 4], gamma=0.1): epochs 0,1 -> 1; 2,3 -> .1; 4 -> .01
  const auto lrs = Lrs({.schedule = "multistep", .milestones = {2, 4}, .gamma = 0.1f}, 1.0f, 1, 5);
  EXPECT_FLOAT_EQ(lrs[0], 1.0f);
  EXPECT_FLOAT_EQ(lrs[1], 1.0f);
  EXPECT_FLOAT_EQ(lrs[2], 0.1f);
  EXPECT_FLOAT_EQ(lrs[3], 0.1f);
  EXPECT_FLOAT_EQ(lrs[4], 0.01f);
}

TEST(EpochScheduleTest, CosineAnnealsFromBaseTowardsMin) {
  // torch CosineAnnealingLR(T_max=4, eta_min=0.1) from 1: epoch j -> .1 + .9 (1 + cos(pi j/4))/2
  const auto lrs = Lrs({.schedule = "cosine", .min_lr = 0.1f}, 1.0f, 1, 4);
  for (int j = 0; j < 4; ++j) {
    EXPECT_FLOAT_EQ(lrs[j], float(0.1 + 0.9 * (1 + std::cos(std::numbers::pi * j / 4)) / 2)) << j;
  }
  EXPECT_FLOAT_EQ(lrs[0], 1.0f);
  EXPECT_GT(lrs[3], 0.1f);  // the last epoch is one step before the minimum, as in PyTorch
}

TEST(EpochScheduleTest, WarmupRampsLinearlyThenTheScheduleRuns) {
  // 3 warmup epochs: 1/4, 2/4, 3/4 of the base; cosine then anneals over the remaining 4.
  const auto lrs = Lrs({.schedule = "cosine", .warmup_epochs = 3}, 0.8f, 1, 7);
  EXPECT_FLOAT_EQ(lrs[0], 0.2f);
  EXPECT_FLOAT_EQ(lrs[1], 0.4f);
  EXPECT_FLOAT_EQ(lrs[2], 0.6f);
  EXPECT_FLOAT_EQ(lrs[3], 0.8f);  // cosine at its start
  EXPECT_FLOAT_EQ(lrs[5], 0.4f);  // halfway: (1 + cos(pi/2)) / 2
}

TEST(EpochScheduleTest, ScalingMultipliesTheBaseByPeersOrTheirSquareRoot) {
  EXPECT_FLOAT_EQ(EpochSchedule({.scale = "none"}, 0.1f, 4, 3).base_lr(), 0.1f);
  EXPECT_FLOAT_EQ(EpochSchedule({.scale = "linear"}, 0.1f, 4, 3).base_lr(), 0.4f);
  EXPECT_FLOAT_EQ(EpochSchedule({.scale = "sqrt"}, 0.1f, 4, 3).base_lr(), 0.2f);
  // Warmup starts from a fraction of the scaled rate.
  EXPECT_FLOAT_EQ(
      EpochSchedule({.schedule = "step", .warmup_epochs = 1, .scale = "linear"}, 0.1f, 4, 3)
          .LrFor(1)
          .value(),
      0.2f);
}

// The default leaves the lr to ReduceLROnPlateau: epoch 1 sets --lr itself (bit for bit), later
// epochs are not touched; with warmup, plateau takes over after it and not during it.
TEST(EpochScheduleTest, PlateauIsTheDefaultAndOwnsTheLrAfterWarmup) {
  const EpochSchedule plain({}, 0.02f, 1, 5);
  EXPECT_EQ(plain.LrFor(1), 0.02f);
  EXPECT_EQ(plain.LrFor(2), std::nullopt);
  EXPECT_TRUE(plain.PlateauAfter(1));
  const EpochSchedule warm({.warmup_epochs = 2, .scale = "linear"}, 0.02f, 2, 5);
  EXPECT_FLOAT_EQ(warm.LrFor(1).value(), 0.04f / 3);
  EXPECT_FALSE(warm.PlateauAfter(2));
  EXPECT_FLOAT_EQ(warm.LrFor(3).value(), 0.04f);
  EXPECT_TRUE(warm.PlateauAfter(3));
  EXPECT_EQ(warm.LrFor(4), std::nullopt);
}

// Two schedules built from the same options give the same bits (what the peers rely on).
TEST(EpochScheduleTest, SameOptionsSameBits) {
  const EpochScheduleOptions o{.schedule = "cosine", .warmup_epochs = 2, .scale = "sqrt"};
  EXPECT_EQ(Lrs(o, 0.05f, 3, 9), Lrs(o, 0.05f, 3, 9));
  EXPECT_NE(o.ToString(), EpochScheduleOptions{}.ToString());
}

TEST(EpochScheduleTest, BadOptionsNameTheFlag) {
  struct Case {
    EpochScheduleOptions o;
    const char* says;
  };
  const Case cases[] = {
      {{.schedule = "linear"}, "--lr-schedule linear"},
      {{.scale = "cube"}, "--lr-scale cube"},
      {{.warmup_epochs = 5}, "--warmup-epochs 5 must be >= 0 and below --epochs 5"},
      {{.schedule = "multistep"}, "needs --lr-milestones"},
      {{.schedule = "multistep", .milestones = {3, 3}}, "strictly increasing"},
      {{.step_size = 0}, "--lr-step-size 0"},
      {{.gamma = 0.0f}, "--lr-gamma 0"},
      {{.min_lr = -1.0f}, "--lr-min -1"},
  };
  for (const Case& c : cases) {
    const Status s = c.o.Validate(5);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << c.says;
    EXPECT_THAT(s.message(), HasSubstr(c.says));
  }
  EXPECT_TRUE(EpochScheduleOptions{}.Validate(5).ok());
}

}  // namespace
}  // namespace p2p::ml
