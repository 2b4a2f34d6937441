// torchvision's resnet18 (BasicBlock, [2, 2, 2, 2]) with the CIFAR stem.
#include "ml/models/net.h"
#include "ml/models/zoo.h"

namespace p2p::ml {
namespace {

constexpr float kEps = 1e-5f, kMomentum = 0.1f;  // nn.BatchNorm2d's defaults
// torchvision: kaiming_normal_(fan_out, relu) for convs, no conv biases (BN follows).
constexpr ConvOptions kConv{.groups = 1, .bias = false, .init = WeightInit::kFanOut};

// conv3x3(s) BN ReLU conv3x3 BN, plus the input (or a 1x1 stride-s conv + BN where the shape
// changes), then ReLU.
void BasicBlock(Net& net, int planes, int stride) {
  const bool downsample = stride != 1 || net.shape().c != planes;
  net.Residual(
      [&](Net& body) {
        body.Conv(planes, 3, stride, 1, kConv).BatchNorm(kEps, kMomentum).Relu();
        body.Conv(planes, 3, 1, 1, kConv).BatchNorm(kEps, kMomentum);
      },
      downsample ? Net::Branch([&](Net& s) {
        s.Conv(planes, 1, stride, 0, kConv).BatchNorm(kEps, kMomentum);
      })
                 : Net::Branch());
  net.Relu();
}

}  // namespace

// The CIFAR stem (conv 3x3 s1 p1 -> 64, BN, ReLU, no max-pool) replaces torchvision's 7x7 s2 conv
// and 3x3 max-pool, which would shrink a 32x32 image to 8x8 before the first block.
Result<Layers> BuildResnet18(const ModelOptions& o) {
  Net net(o.input);
  net.Conv(64, 3, 1, 1, kConv).BatchNorm(kEps, kMomentum).Relu();
  for (int planes : {64, 128, 256, 512}) {
    BasicBlock(net, planes, planes == 64 ? 1 : 2);
    BasicBlock(net, planes, 1);
  }
  net.GlobalAvgPool();
  // torchvision leaves the fc layer at nn.Linear's default init.
  net.Head(o, /*torch_default_init=*/true);
  return net.Finish();
}

}  // namespace p2p::ml
