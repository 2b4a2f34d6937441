// torchvision's vgg11 and vgg11_bn (configuration "A") and squeezenet1_1, as the EC2 study
// trained them.
#include "ml/models/net.h"
#include "ml/models/zoo.h"

namespace p2p::ml {
namespace {

constexpr float kEps = 1e-5f, kMomentum = 0.1f;  // nn.BatchNorm2d's defaults
constexpr int kMaxPoolMark = 0;
// VGG "A": 3x3 convolutions (padding 1) of these widths, 0 for a 2x2 max-pool.
constexpr int kVgg11[] = {64, 0, 128, 0, 256, 256, 0, 512, 512, 0, 512, 512, 0};

// torchvision's VGG: features, AdaptiveAvgPool2d((7, 7)), then Linear(512*7*7, 4096), ReLU,
// Dropout, Linear(4096, 4096), ReLU, Dropout, Linear(4096, classes). Init: kaiming_normal_
// (fan_out, relu) convs with bias 0, BN 1/0, Linear N(0, 0.01) with bias 0. The adaptive pool
// runs whatever the input: on 32x32 the features end at 1x1 and it makes 49 copies, as in
// PyTorch, so the parameter count is torchvision's.
Result<Layers> BuildVgg11(const ModelOptions& o, bool batch_norm) {
  constexpr ConvOptions kConv{.groups = 1, .bias = true, .init = WeightInit::kFanOut};
  Net net(o.input);
  for (int width : kVgg11) {
    if (width == kMaxPoolMark) {
      net.MaxPool(2, 2);
      continue;
    }
    net.Conv(width, 3, 1, 1, kConv);
    if (batch_norm) net.BatchNorm(kEps, kMomentum);
    net.Relu();
  }
  net.AdaptiveAvgPool(7, 7);
  // torchvision's dropout=0.5 in both places, unless --dropout sets another rate.
  const float p = o.dropout > 0.0f ? o.dropout : 0.5f;
  net.Linear(4096, /*torch_default_init=*/false).Relu().Dropout(p);
  net.Linear(4096, /*torch_default_init=*/false).Relu().Dropout(p);
  net.Linear(o.num_classes, /*torch_default_init=*/false);
  net.OutputFor(o);
  return net.Finish();
}

// Fire: squeeze 1x1 + ReLU, then the channel concatenation of expand 1x1 + ReLU and expand 3x3
// (padding 1) + ReLU.
void Fire(Net& net, int squeeze, int expand1x1, int expand3x3) {
  constexpr ConvOptions kConv{.groups = 1, .bias = true, .init = WeightInit::kKaimingUniform};
  net.Conv(squeeze, 1, 1, 0, kConv).Relu();
  net.Concat({[&](Net& b) { b.Conv(expand1x1, 1, 1, 0, kConv).Relu(); },
              [&](Net& b) { b.Conv(expand3x3, 3, 1, 1, kConv).Relu(); }});
}

}  // namespace

Result<Layers> BuildVgg11(const ModelOptions& o) { return BuildVgg11(o, /*batch_norm=*/false); }
Result<Layers> BuildVgg11Bn(const ModelOptions& o) { return BuildVgg11(o, /*batch_norm=*/true); }

// torchvision's squeezenet1_1: conv 64@3x3 s2, ReLU, max-pools 3x3 s2 in ceil mode between fire
// modules, and a classifier of Dropout(0.5), conv classes@1x1, ReLU, global average pool. Init:
// kaiming_uniform_ convs, N(0, 0.01) for the classifier conv, biases 0.
Result<Layers> BuildSqueezenet11(const ModelOptions& o) {
  constexpr ConvOptions kConv{.groups = 1, .bias = true, .init = WeightInit::kKaimingUniform};
  Net net(o.input);
  net.Conv(64, 3, 2, 0, kConv).Relu().MaxPool(3, 2, /*ceil_mode=*/true);
  Fire(net, 16, 64, 64);
  Fire(net, 16, 64, 64);
  net.MaxPool(3, 2, /*ceil_mode=*/true);
  Fire(net, 32, 128, 128);
  Fire(net, 32, 128, 128);
  net.MaxPool(3, 2, /*ceil_mode=*/true);
  Fire(net, 48, 192, 192);
  Fire(net, 48, 192, 192);
  Fire(net, 64, 256, 256);
  Fire(net, 64, 256, 256);
  net.Dropout(o.dropout > 0.0f ? o.dropout : 0.5f);
  net.Conv(o.num_classes, 1, 1, 0, {.groups = 1, .bias = true, .init = WeightInit::kNormal001});
  net.Relu().GlobalAvgPool();
  net.OutputFor(o);
  return net.Finish();
}

}  // namespace p2p::ml
