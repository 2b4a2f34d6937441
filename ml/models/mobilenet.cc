// The MobileNets: the replications' CIFAR MobileNet v1, torchvision's mobilenet_v2 and
// mobilenet_v3_small.
#include <array>

#include "ml/models/net.h"
#include "ml/models/zoo.h"

namespace p2p::ml {
namespace {

constexpr ConvOptions kFanOut{.groups = 1, .bias = false, .init = WeightInit::kFanOut};

ConvOptions Depthwise(int channels, WeightInit init) {
  return {.groups = channels, .bias = false, .init = init};
}

enum class Act { kRelu, kRelu6, kHardswish };

void Activate(Net& net, Act act) {
  switch (act) {
    case Act::kRelu:
      net.Relu();
      break;
    case Act::kRelu6:
      net.Relu6();
      break;
    case Act::kHardswish:
      net.Hardswish();
      break;
  }
}

}  // namespace

// REFERENCE.md Part A §0: conv3x3(3->32, s1)+BN+ReLU, 13 depthwise-separable blocks (dw3x3+BN+ReLU,
// pw1x1+BN+ReLU, no biases), avg_pool2d(2), Linear(1024->classes). The replications construct
// it with PyTorch's default initialisation (no init code), so that is what it gets here.
Result<Layers> BuildMobilenetV1Cifar(const ModelOptions& o) {
  constexpr float kEps = 1e-5f, kMomentum = 0.1f;
  constexpr ConvOptions kDefault{.groups = 1, .bias = false, .init = WeightInit::kTorchDefault};
  struct Block {
    int out, stride;
  };
  constexpr std::array<Block, 13> kCfg = {{{64, 1},
                                           {128, 2},
                                           {128, 1},
                                           {256, 2},
                                           {256, 1},
                                           {512, 2},
                                           {512, 1},
                                           {512, 1},
                                           {512, 1},
                                           {512, 1},
                                           {512, 1},
                                           {1024, 2},
                                           {1024, 1}}};
  Net net(o.input);
  net.Conv(32, 3, 1, 1, kDefault).BatchNorm(kEps, kMomentum).Relu();
  for (const Block& b : kCfg) {
    const int in = net.shape().c;
    net.Conv(in, 3, b.stride, 1, Depthwise(in, WeightInit::kTorchDefault))
        .BatchNorm(kEps, kMomentum)
        .Relu();
    net.Conv(b.out, 1, 1, 0, kDefault).BatchNorm(kEps, kMomentum).Relu();
  }
  net.AvgPool(2, 2);
  net.Head(o, /*torch_default_init=*/true);
  return net.Finish();
}

// torchvision.models.mobilenet_v2: inverted residuals (expand 1x1, depthwise 3x3, project 1x1)
// with ReLU6, conv kaiming_normal_(fan_out), BN 1/0, classifier Dropout(0.2) + Linear N(0, 0.01).
Result<Layers> BuildMobilenetV2(const ModelOptions& o) {
  constexpr float kEps = 1e-5f, kMomentum = 0.1f;
  struct Stage {
    int t, c, n, s;
  };
  constexpr std::array<Stage, 7> kStages = {{{1, 16, 1, 1},
                                             {6, 24, 2, 2},
                                             {6, 32, 3, 2},
                                             {6, 64, 4, 2},
                                             {6, 96, 3, 1},
                                             {6, 160, 3, 2},
                                             {6, 320, 1, 1}}};
  Net net(o.input);
  net.Conv(32, 3, 2, 1, kFanOut).BatchNorm(kEps, kMomentum).Relu6();
  for (const Stage& st : kStages) {
    for (int i = 0; i < st.n; ++i) {
      const int in = net.shape().c, stride = i == 0 ? st.s : 1, hidden = in * st.t;
      auto body = [&](Net& b) {
        if (st.t != 1) b.Conv(hidden, 1, 1, 0, kFanOut).BatchNorm(kEps, kMomentum).Relu6();
        b.Conv(hidden, 3, stride, 1, Depthwise(hidden, WeightInit::kFanOut))
            .BatchNorm(kEps, kMomentum)
            .Relu6();
        b.Conv(st.c, 1, 1, 0, kFanOut).BatchNorm(kEps, kMomentum);
      };
      if (stride == 1 && in == st.c) {
        net.Residual(body, nullptr);
      } else {
        body(net);
      }
    }
  }
  net.Conv(1280, 1, 1, 0, kFanOut).BatchNorm(kEps, kMomentum).Relu6();
  net.GlobalAvgPool();
  ModelOptions head = o;
  head.dropout = o.dropout > 0.0f ? o.dropout : 0.2f;
  net.Head(head, /*torch_default_init=*/false);
  return net.Finish();
}

// torchvision.models.mobilenet_v3_small (width 1.0): BN eps 1e-3 momentum 0.01, SE blocks with
// hardsigmoid gates, classifier Linear(576->1024), Hardswish, Dropout(0.2), Linear(->classes).
Result<Layers> BuildMobilenetV3Small(const ModelOptions& o) {
  constexpr float kEps = 1e-3f, kMomentum = 0.01f;
  struct Bneck {
    int kernel, expanded, out;
    bool se;
    Act act;
    int stride;
  };
  constexpr Act RE = Act::kRelu, HS = Act::kHardswish;
  constexpr std::array<Bneck, 11> kSetting = {{{3, 16, 16, true, RE, 2},
                                               {3, 72, 24, false, RE, 2},
                                               {3, 88, 24, false, RE, 1},
                                               {5, 96, 40, true, HS, 2},
                                               {5, 240, 40, true, HS, 1},
                                               {5, 240, 40, true, HS, 1},
                                               {5, 120, 48, true, HS, 1},
                                               {5, 144, 48, true, HS, 1},
                                               {5, 288, 96, true, HS, 2},
                                               {5, 576, 96, true, HS, 1},
                                               {5, 576, 96, true, HS, 1}}};
  Net net(o.input);
  net.Conv(16, 3, 2, 1, kFanOut).BatchNorm(kEps, kMomentum).Hardswish();
  for (const Bneck& b : kSetting) {
    const int in = net.shape().c;
    auto body = [&](Net& n) {
      if (b.expanded != in) {
        n.Conv(b.expanded, 1, 1, 0, kFanOut).BatchNorm(kEps, kMomentum);
        Activate(n, b.act);
      }
      n.Conv(b.expanded, b.kernel, b.stride, (b.kernel - 1) / 2,
             Depthwise(b.expanded, WeightInit::kFanOut))
          .BatchNorm(kEps, kMomentum);
      Activate(n, b.act);
      if (b.se) n.SqueezeExcite(MakeDivisible(b.expanded / 4));
      n.Conv(b.out, 1, 1, 0, kFanOut).BatchNorm(kEps, kMomentum);
    };
    if (b.stride == 1 && in == b.out) {
      net.Residual(body, nullptr);
    } else {
      body(net);
    }
  }
  net.Conv(576, 1, 1, 0, kFanOut).BatchNorm(kEps, kMomentum).Hardswish();
  net.GlobalAvgPool().Linear(1024, /*torch_default_init=*/false).Hardswish();
  ModelOptions head = o;
  head.dropout = o.dropout > 0.0f ? o.dropout : 0.2f;
  net.Head(head, /*torch_default_init=*/false);
  return net.Finish();
}

}  // namespace p2p::ml
