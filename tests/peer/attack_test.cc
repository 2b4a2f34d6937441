// The attacks' arithmetic (peer/attack.h), against hand-computed values.
#include "peer/attack.h"

#include <gtest/gtest.h>

#include <cmath>

namespace p2p::peer {
namespace {

double Phi(double x) { return 0.5 * std::erfc(-x / std::sqrt(2.0)); }

TEST(AttackTest, AlieDefaultZIsThePapersZMax) {
  // n = 5, f = 1: s = floor(5/2 + 1) - 1 = 2, Phi(z) = (5 - 2) / 5 = 0.6.
  EXPECT_NEAR(Phi(AlieDefaultZ(5, 1)), 0.6, 1e-12);
  EXPECT_NEAR(AlieDefaultZ(5, 1), 0.2533471, 1e-6);
  // The paper's n = 50, f = 12: s = 14, Phi(z) = 0.72.
  EXPECT_NEAR(Phi(AlieDefaultZ(50, 12)), 0.72, 1e-12);
  // Too few attackers to need any shift: z = 0, never negative.
  EXPECT_EQ(AlieDefaultZ(4, 0), 0.0);
}

Result<std::unique_ptr<Attack>> Make(const std::string& spec, int rank = 1) {
  return Attack::Make(spec, "1", rank, 5, 7);
}

TEST(AttackTest, AlieSendsMeanMinusZStdOfTheHonestGradients) {
  auto attack = Make("alie:z=2");
  ASSERT_TRUE(attack.ok()) << attack.status().ToString();
  ASSERT_TRUE(*attack);
  EXPECT_TRUE((*attack)->omniscient());
  EXPECT_EQ((*attack)->spec(), "alie:z=2");
  const std::vector<float> a = {1, 0, -3}, b = {3, 0, -1};  // mean 2, 0, -2; std 1, 0, 1
  std::vector<float> grad = {100, 100, 100};
  (*attack)->CorruptFromHonest({a, b}, grad);
  EXPECT_EQ(grad, (std::vector<float>{0, 0, -4}));
  // Corrupt (the own-gradient path) leaves an omniscient attack's gradient alone.
  (*attack)->Corrupt(1, 0, grad);
  EXPECT_EQ(grad, (std::vector<float>{0, 0, -4}));
}

TEST(AttackTest, AlieWithoutZTakesTheDefaultForTheRunSize) {
  auto attack = Make("alie");
  ASSERT_TRUE(attack.ok()) << attack.status().ToString();
  EXPECT_EQ((*attack)->spec(), "alie:z=0.253347");
}

TEST(AttackTest, IpmSendsMinusEpsTimesTheHonestMean) {
  auto attack = Make("ipm:eps=0.5");
  ASSERT_TRUE(attack.ok()) << attack.status().ToString();
  const std::vector<float> a = {1, 4}, b = {3, -8};
  std::vector<float> grad(2);
  (*attack)->CorruptFromHonest({a, b}, grad);
  EXPECT_EQ(grad, (std::vector<float>{-1, 1}));
  EXPECT_EQ((*Make("ipm"))->spec(), "ipm:eps=0.1");
}

TEST(AttackTest, OmniscientAttacksNeedAnHonestPeerAndOnlyTheyNeedTheHonestGradients) {
  auto all = Attack::Make("alie", "0,1", 0, 2, 7);
  ASSERT_FALSE(all.ok());
  EXPECT_NE(all.status().message().find("names every rank"), std::string::npos);
  // Checked on honest ranks too, so every peer fails the same way before training.
  EXPECT_FALSE(Attack::Make("ipm", "0,1", 1, 2, 7).ok());
  EXPECT_TRUE(AttackNeedsHonestGradients("alie:z=1"));
  EXPECT_TRUE(AttackNeedsHonestGradients("ipm"));
  EXPECT_FALSE(AttackNeedsHonestGradients("signflip:scale=10"));
  EXPECT_FALSE((*Make("signflip"))->omniscient());
  // An honest rank gets no attack object.
  auto honest = Make("alie", 0);
  ASSERT_TRUE(honest.ok());
  EXPECT_FALSE(*honest);
}

}  // namespace
}  // namespace p2p::peer
