// Loss tests: values, numerical stability, gradients against finite differences, name parsing.
#include "ml/loss.h"

#include <gtest/gtest.h>

#include <cmath>

#include "tests/ml/gradcheck.h"

namespace p2p::ml {
namespace {

using gradcheck::kTolerance;
using gradcheck::MaxRelDiff;
using gradcheck::RandomMatrix;

// Max relative difference between Compute's gradient and finite differences of the mean loss.
double LossGradientError(const Loss& loss, Matrix z, const std::vector<int32_t>& labels) {
  Matrix dz, scratch;
  loss.Compute(z, labels, dz);
  auto value = [&] { return double(loss.Compute(z, labels, scratch)); };
  return MaxRelDiff(z.data(), z.size(), std::vector<double>(dz.data(), dz.data() + dz.size()),
                    value);
}

Matrix LogSoftmaxRows(const Matrix& z) {
  Matrix out = z;
  for (Eigen::Index n = 0; n < z.rows(); ++n) {
    out.row(n).array() -= std::log(z.row(n).array().exp().sum());
  }
  return out;
}

TEST(CrossEntropy, UniformLogitsGiveLogClasses) {
  const auto loss = MakeLoss(LossKind::kCrossEntropy);
  const Matrix z = Matrix::Zero(4, 10);
  Matrix dz;
  EXPECT_NEAR(loss->Compute(z, {{0, 3, 9, 5}}, dz), std::log(10.0f), 1e-6f);
  EXPECT_NEAR(loss->Sum(z, {{0, 3, 9, 5}}), 4 * std::log(10.0), 1e-5);
  EXPECT_NEAR(dz.sum(), 0.0f, 1e-6f);  // softmax - onehot sums to zero per row
}

TEST(CrossEntropy, StableForHugeLogits) {
  const auto loss = MakeLoss(LossKind::kCrossEntropy);
  Matrix z(2, 3), dz;
  z << 1000, -1000, 0,  //
      -1e30f, 1e30f, 0;
  const float value = loss->Compute(z, {{0, 0}}, dz);
  EXPECT_TRUE(std::isfinite(value));
  EXPECT_NEAR(value, 1e30f, 1e25f);  // row 0 costs 0, row 1 costs 2e30: mean 1e30
  EXPECT_TRUE(dz.allFinite());
}

TEST(CrossEntropy, GradientMatchesFiniteDifferences) {
  const auto loss = MakeLoss(LossKind::kCrossEntropy);
  const double error = LossGradientError(*loss, RandomMatrix(4, 5, 1, 2.0f), {1, 0, 4, 2});
  std::printf("    max relative difference %.3g (tolerance %.g)\n", error, kTolerance);
  EXPECT_LT(error, kTolerance);
}

TEST(Nll, EqualsCrossEntropyOnLogSoftmax) {
  const Matrix z = RandomMatrix(5, 7, 2, 3.0f);
  const std::vector<int32_t> labels = {6, 0, 3, 3, 1};
  Matrix d1, d2;
  const float ce = MakeLoss(LossKind::kCrossEntropy)->Compute(z, labels, d1);
  const float nll = MakeLoss(LossKind::kNll)->Compute(LogSoftmaxRows(z), labels, d2);
  EXPECT_NEAR(ce, nll, 1e-5f);
}

TEST(Nll, GradientMatchesFiniteDifferences) {
  const auto loss = MakeLoss(LossKind::kNll);
  const double error = LossGradientError(*loss, RandomMatrix(3, 4, 3), {3, 1, 0});
  std::printf("    max relative difference %.3g (tolerance %.g)\n", error, kTolerance);
  EXPECT_LT(error, kTolerance);
}

TEST(Loss, LabelOutOfRangeIsABrokenInvariant) {
  Matrix dz;
  EXPECT_THROW(MakeLoss(LossKind::kNll)->Compute(Matrix::Zero(1, 3), {{3}}, dz), InvariantError);
  EXPECT_THROW(MakeLoss(LossKind::kCrossEntropy)->Sum(Matrix::Zero(2, 3), {{0}}), InvariantError);
}

TEST(ParseLoss, AcceptsTheStudyNames) {
  EXPECT_EQ(*ParseLoss("cross_entropy"), LossKind::kCrossEntropy);
  EXPECT_EQ(*ParseLoss("NLL"), LossKind::kNll);
  EXPECT_EQ(*ParseLoss("nll"), LossKind::kNll);
  EXPECT_EQ(LossName(LossKind::kNll), "NLL");
  EXPECT_EQ(*ParseLoss(LossName(LossKind::kCrossEntropy)), LossKind::kCrossEntropy);
}

TEST(ParseLoss, UnknownNameListsValidNames) {
  const Result<LossKind> r = ParseLoss("mse");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("mse"), std::string::npos);
  EXPECT_NE(r.status().message().find("cross_entropy"), std::string::npos);
  EXPECT_NE(r.status().message().find("NLL"), std::string::npos);
}

}  // namespace
}  // namespace p2p::ml
