// Net: a builder for models that are graphs (residuals, concatenations) and not only chains.
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "common/status.h"
#include "ml/layers/conv2d.h"
#include "ml/layers/graph.h"
#include "ml/model.h"

namespace p2p::ml {

// Appends layers while tracking the per-sample shape. The first invalid step (an input too small
// for a window) is remembered and returned by Finish(), so builders read as one chain. Residual
// and Concat take callbacks that build their branches on a fresh Net of the current shape.
class Net {
 public:
  using Branch = std::function<void(Net&)>;

  explicit Net(Shape input) : input_(input), shape_(input) {}

  Shape shape() const { return shape_; }
  // groups == in_c == out picks the direct depthwise kernel; 1x1 convs take Conv2d's fast path.
  Net& Conv(int out, int kernel, int stride, int padding, ConvOptions options);
  Net& BatchNorm(float eps, float momentum);
  Net& Relu();
  Net& Relu6();
  Net& Hardswish();
  Net& SqueezeExcite(int squeeze_channels);
  Net& MaxPool(int kernel, int stride, bool ceil_mode = false);
  Net& AvgPool(int kernel, int stride);
  Net& GlobalAvgPool();
  Net& AdaptiveAvgPool(int out_h, int out_w);
  Net& Dropout(float p);
  Net& Linear(int out, bool torch_default_init);
  // y = body(x) + shortcut(x); a null shortcut is the identity.
  Net& Residual(const Branch& body, const Branch& shortcut);
  // Channel concatenation of the branches' outputs.
  Net& Concat(const std::vector<Branch>& branches);
  // torchvision's classifier tail: [dropout] -> linear(classes) [-> log_softmax for NLL].
  Net& Head(const ModelOptions& options, bool torch_default_init);
  // The log_softmax NLL models end in (nothing for cross-entropy), for heads Head() does not fit.
  Net& OutputFor(const ModelOptions& options);

  Result<Layers> Finish();

 private:
  Net& Add(std::unique_ptr<Layer> layer);
  bool Fits(int kernel, int stride, int padding);
  // Builds `branch` on a Net from the current shape; null (status_ set) if it failed.
  std::unique_ptr<Sequential> Build(const Branch& branch);

  Shape input_, shape_;
  Layers layers_;
  Status status_;
};

// torchvision's _make_divisible(v, 8): channel counts rounded to multiples of 8, never down by
// more than 10 %.
int MakeDivisible(double v, int divisor = 8);

}  // namespace p2p::ml
