// cnn-bn: the smallest model with BatchNorm, so that what BatchNorm needs from data-parallel
// training (running statistics agreed across peers, hashed, checkpointed) is quick to exercise.
#include "ml/models/net.h"
#include "ml/models/zoo.h"

namespace p2p::ml {

Result<Layers> BuildCnnBn(const ModelOptions& o) {
  constexpr float kEps = 1e-5f, kMomentum = 0.1f;  // nn.BatchNorm2d's defaults
  constexpr ConvOptions kConv{.groups = 1, .bias = false, .init = WeightInit::kFanOut};
  Net net(o.input);
  net.Conv(16, 3, 1, 1, kConv).BatchNorm(kEps, kMomentum).Relu().MaxPool(2, 2);
  net.Conv(32, 3, 1, 1, kConv).BatchNorm(kEps, kMomentum).Relu().MaxPool(2, 2);
  net.GlobalAvgPool();
  net.Head(o, /*torch_default_init=*/true);
  return net.Finish();
}

}  // namespace p2p::ml
