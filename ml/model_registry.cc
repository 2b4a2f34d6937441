#include "ml/model_registry.h"

#include <array>

#include "ml/layers/activation.h"
#include "ml/layers/conv2d.h"
#include "ml/layers/dropout.h"
#include "ml/layers/linear.h"
#include "ml/layers/pool.h"
#include "ml/models/zoo.h"

namespace p2p::ml {
namespace {

// Appends layers while tracking the per-sample shape; the first invalid step is remembered and
// returned by Finish(), so builders read as one chain without a check after every layer.
class LayerStack {
 public:
  explicit LayerStack(Shape input) : shape_(input) {}

  LayerStack& Conv(int out_c, int kernel, int stride, int padding) {
    if (Fits(kernel, stride, padding))
      Add(std::make_unique<Conv2d>(shape_, out_c, kernel, stride, padding));
    return *this;
  }
  LayerStack& Pool(int kernel, int stride) {
    if (Fits(kernel, stride, 0)) Add(std::make_unique<MaxPool2d>(shape_, kernel, stride));
    return *this;
  }
  LayerStack& Fc(int out) {
    if (out <= 0 && status_.ok()) status_ = InvalidArgument("layer width {} is not positive", out);
    if (status_.ok()) Add(std::make_unique<Linear>(shape_.size(), out));
    return *this;
  }
  LayerStack& Relu() { return Add(std::make_unique<ReLU>()); }
  LayerStack& Flat() { return Add(std::make_unique<Flatten>()); }

  // The classifier head every model shares: [dropout] -> linear(classes) [-> log_softmax].
  LayerStack& Head(const ModelOptions& o) {
    if (o.dropout > 0.0f) Add(std::make_unique<Dropout>(o.dropout));
    Fc(o.num_classes);
    if (o.loss == LossKind::kNll) Add(std::make_unique<LogSoftmax>());
    return *this;
  }

  // Moves the layers out; call once, last.
  Result<Layers> Finish() {
    if (!status_.ok()) return status_;
    return std::move(layers_);
  }

 private:
  LayerStack& Add(std::unique_ptr<Layer> layer) {
    if (!status_.ok()) return *this;
    shape_ = layer->OutputShape(shape_);
    layers_.push_back(std::move(layer));
    return *this;
  }
  bool Fits(int kernel, int stride, int padding) {
    if (!status_.ok()) return false;
    if (ConvOutExtent(shape_.h, kernel, stride, padding) > 0 &&
        ConvOutExtent(shape_.w, kernel, stride, padding) > 0) {
      return true;
    }
    status_ = InvalidArgument("input {} is too small for a {}x{} window at layer {}",
                              shape_.ToString(), kernel, kernel, layers_.size());
    return false;
  }

  Shape shape_;
  Layers layers_;
  Status status_;
};

Result<Layers> BuildLogreg(const ModelOptions& o) { return LayerStack(o.input).Head(o).Finish(); }

Result<Layers> BuildMlp(const ModelOptions& o) {
  LayerStack stack(o.input);
  for (int width : o.hidden) stack.Fc(width).Relu();
  return stack.Head(o).Finish();
}

Result<Layers> BuildLenet5(const ModelOptions& o) {
  LayerStack stack(o.input);
  stack.Conv(6, 5, 1, 2).Relu().Pool(2, 2).Conv(16, 5, 1, 0).Relu().Pool(2, 2).Flat();
  stack.Fc(120).Relu().Fc(84).Relu();
  return stack.Head(o).Finish();
}

Result<Layers> BuildCnnCifar(const ModelOptions& o) {
  LayerStack stack(o.input);
  stack.Conv(32, 3, 1, 1).Relu().Pool(2, 2).Conv(64, 3, 1, 1).Relu().Pool(2, 2).Flat();
  stack.Fc(128).Relu();
  return stack.Head(o).Finish();
}

constexpr std::array<ModelEntry, 12> kModels = {{
    {"logreg", "linear(in -> classes): multinomial logistic regression", BuildLogreg},
    {"mlp", "in -> hidden... -> classes, ReLU between (default 784-256-128-10)", BuildMlp},
    {"lenet5",
     "conv 6@5x5 p2, relu, maxpool 2, conv 16@5x5, relu, maxpool 2, fc 120, relu, fc 84, relu, "
     "fc classes (for 1x28x28)",
     BuildLenet5},
    {"cnn-cifar",
     "conv 32@3x3 p1, relu, maxpool 2, conv 64@3x3 p1, relu, maxpool 2, fc 128, relu, "
     "fc classes (for 3x32x32: 545k params)",
     BuildCnnCifar},
    {"mobilenet_v3_small",
     "torchvision mobilenet_v3_small: 11 inverted residuals with SE and hardswish (3x32x32 and up)",
     BuildMobilenetV3Small},
    {"resnet18", "torchvision resnet18 with the CIFAR stem: conv 3x3, no max-pool (3x32x32)",
     BuildResnet18},
    {"mobilenet",
     "the replications' CIFAR MobileNet v1: 13 depthwise-separable blocks, avgpool 2 (3x32x32)",
     BuildMobilenetV1Cifar},
    {"mobilenet_v2", "torchvision mobilenet_v2: 17 inverted residuals with ReLU6 (3x32x32 and up)",
     BuildMobilenetV2},
    {"cnn-bn",
     "conv 16@3x3 p1, BN, relu, maxpool 2, conv 32@3x3 p1, BN, relu, maxpool 2, global avg pool, "
     "fc classes: the smallest BatchNorm model (tests, quick runs; 4x4 inputs and up)",
     BuildCnnBn},
    {"squeezenet1_1",
     "torchvision squeezenet1_1: 8 fire modules, ceil-mode max-pools, conv classifier (3x32x32 "
     "and up)",
     BuildSqueezenet11},
    {"vgg11", "torchvision vgg11: 8 conv 3x3, 5 max-pools, avgpool 7x7, fc 4096-4096 (3x32x32)",
     BuildVgg11},
    {"vgg11_bn", "torchvision vgg11_bn: vgg11 with BatchNorm after each conv (3x32x32)",
     BuildVgg11Bn},
}};

}  // namespace

std::span<const ModelEntry> ModelRegistry() { return kModels; }

}  // namespace p2p::ml
