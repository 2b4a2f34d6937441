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
    {"mobilenet_v3_small", 1528106, 12112}, {"resnet18", 11181642 - 9408 + 1728, 9600},
    {"mobilenet", 3217226, 21888},          {"mobilenet_v2", 2236682, 34112},
    {"squeezenet1_1", 727626, 0},           {"vgg11", 128807306, 0},
    {"vgg11_bn", 128812810, 5504},
};

// 128M parameters, most in the 25088 x 4096 classifier: too slow for the fit-a-batch loop.
bool IsVgg(const std::string& name) { return name.starts_with("vgg11"); }

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
    if (IsVgg(c.name)) continue;
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
    // squeezenet1_1 starts slowly: its classifier is a N(0, 0.01) conv followed by ReLU and
    // average pooling, so the first steps move the logits little (8 steps: 2.29 -> 2.22).
    const float factor = std::string(c.name) == "squeezenet1_1" ? 0.99f : 0.85f;
    EXPECT_LT(last, factor * first);
  }
}

// The fixed case both sides run: the model at seed 1, BatchNorm buffers set to non-trivial values
// (mean N(0, 0.1^2), variance U[0.5, 1.5)) so evaluation exercises them, input 4 x N(0, 1) seed 7.
// Batch 4: with batch 2 the last stages' BatchNorms (1x1 maps) normalise two values per channel,
// which magnifies float rounding near equal pairs (measured 1.6e-2 relative on mobilenet_v2).
constexpr int kReferenceBatch = 4;

struct ReferenceCase {
  std::unique_ptr<Model> model;
  Matrix x;
};

// Dropout 1e-9 keeps every value (a value is kept iff its 24-bit draw is below (1-p) 2^24) with
// scale 1/(1-p) == 1.0f, so the training-mode pass is deterministic and comparable with PyTorch's
// with its Dropout modules off.
ReferenceCase MakeReferenceCase(const std::string& name) {
  ModelOptions o = Options(name);
  o.dropout = 1e-9f;
  ReferenceCase c{MustCreate(o), Matrix(kReferenceBatch, 3 * 32 * 32)};
  Rng rng(7);
  FillNormal(rng, 1.0f, {c.x.data(), size_t(c.x.size())});
  std::vector<float> noise(c.model->NumBuffers());
  FillNormal(rng, 0.1f, noise);
  // Buffers are, per BatchNorm, C running means then C running variances; a variance slot is
  // recognised by its initial value 1 (means start at 0).
  for (size_t i = 0; i < noise.size(); ++i) {
    float& b = c.model->Buffers()[i];
    b = b == 1.0f ? 0.5f + float(UniformDouble(rng)) : noise[i];
  }
  return c;
}

void WriteFloats(const std::filesystem::path& path, std::span<const float> values) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(values.data()), std::streamsize(values.size_bytes()));
  ASSERT_TRUE(out.good()) << path;
}

// With P2P_ZOO_DUMP_DIR set, writes <name>.params/.buffers/.input (raw float32) for
// tests/ml/make_zoo_reference.py; otherwise compares with the committed PyTorch outputs.
TEST(ModelZoo, EvalForwardEqualsPyTorchOnTheSameWeights) {
  const char* source = P2P_ZOO_SOURCE_DIR;  // tests/ml/CMakeLists.txt
  const char* dump = std::getenv("P2P_ZOO_DUMP_DIR");
  for (const Count& count : kCounts) {
    SCOPED_TRACE(count.name);
    ReferenceCase c = MakeReferenceCase(count.name);
    ASSERT_NE(c.model, nullptr);
    // Evaluation with the set buffers, then one training pass (batch statistics) and the
    // buffers it leaves: the first and last 32 values.
    std::vector<float> got;
    const Matrix& y_eval = c.model->Forward(c.x, /*training=*/false);
    got.insert(got.end(), y_eval.data(), y_eval.data() + y_eval.size());
    if (dump != nullptr) {
      const std::filesystem::path base = std::filesystem::path(dump) / count.name;
      WriteFloats(base.string() + ".params", c.model->Params());
      WriteFloats(base.string() + ".buffers", c.model->Buffers());
      WriteFloats(base.string() + ".input", {c.x.data(), size_t(c.x.size())});
      continue;
    }
    const Matrix& y_train = c.model->Forward(c.x, /*training=*/true);
    got.insert(got.end(), y_train.data(), y_train.data() + y_train.size());
    const auto buffers = c.model->Buffers();
    if (!buffers.empty()) {
      got.insert(got.end(), buffers.begin(), buffers.begin() + 32);
      got.insert(got.end(), buffers.end() - 32, buffers.end());
    }
    const auto path =
        std::filesystem::path(source) / "tests/ml/data" / (count.name + std::string(".ref"));
    std::ifstream in(path);
    ASSERT_TRUE(in.good()) << "missing " << path << ": run tests/ml/make_zoo_reference.py";
    std::vector<float> want;
    for (float v; in >> v;) want.push_back(v);
    ASSERT_EQ(want.size(), got.size());
    // Each part relative to its own largest magnitude: evaluation logits are ~1e-2.
    const size_t parts[] = {0, 40, 80, 112, 144};
    const int num_parts = buffers.empty() ? 2 : 4;  // squeezenet1_1, vgg11: no BatchNorm
    for (int part = 0; part < num_parts; ++part) {
      float scale = 0;
      for (size_t i = parts[part]; i < parts[part + 1]; ++i)
        scale = std::max(scale, std::abs(want[i]));
      double worst = 0;
      for (size_t i = parts[part]; i < parts[part + 1]; ++i) {
        worst = std::max(worst, double(std::abs(got[i] - want[i])) / scale);
      }
      const char* what[] = {"eval logits", "train logits", "buffers head", "buffers tail"};
      std::printf("    %s %s: max |ours - pytorch| / max |pytorch| = %.3g\n", count.name,
                  what[part], worst);
      EXPECT_LT(worst, 1e-3) << what[part];
    }
  }
}

}  // namespace
}  // namespace p2p::ml
