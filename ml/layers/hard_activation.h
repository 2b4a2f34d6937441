// Piecewise-linear activations of the MobileNets: ReLU6, Hardsigmoid, Hardswish (as PyTorch).
#pragma once

#include "ml/layer.h"

namespace p2p::ml {

// y = min(max(x, 0), 6); gradient 1 on (0, 6), else 0 (PyTorch's: 0 at both kinks).
class ReLU6 final : public Layer {
 public:
  std::string Name() const override { return "relu6"; }
  Shape OutputShape(Shape input) const override { return input; }
  void Forward(const Matrix& input, Matrix& output, bool training) override;
  void Backward(const Matrix& input, const Matrix& doutput, Matrix* dinput) override;
};

// y = relu6(x + 3) / 6; gradient 1/6 on (-3, 3), else 0.
class Hardsigmoid final : public Layer {
 public:
  std::string Name() const override { return "hardsigmoid"; }
  Shape OutputShape(Shape input) const override { return input; }
  void Forward(const Matrix& input, Matrix& output, bool training) override;
  void Backward(const Matrix& input, const Matrix& doutput, Matrix* dinput) override;
};

// y = x * relu6(x + 3) / 6; gradient 0 below -3, x/3 + 1/2 on [-3, 3], 1 above (PyTorch's).
class Hardswish final : public Layer {
 public:
  std::string Name() const override { return "hardswish"; }
  Shape OutputShape(Shape input) const override { return input; }
  void Forward(const Matrix& input, Matrix& output, bool training) override;
  void Backward(const Matrix& input, const Matrix& doutput, Matrix* dinput) override;
};

// Element-wise helpers shared with the squeeze-and-excitation block.
inline float HardsigmoidOf(float x) { return std::min(std::max(x + 3.0f, 0.0f), 6.0f) / 6.0f; }
inline float HardsigmoidGrad(float x) { return x > -3.0f && x < 3.0f ? 1.0f / 6.0f : 0.0f; }

}  // namespace p2p::ml
