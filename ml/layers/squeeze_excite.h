// Squeeze-and-excitation as torchvision's SqueezeExcitation in MobileNetV3.
#pragma once

#include "ml/layer.h"

namespace p2p::ml {

// s = mean over H, W of x (N, C); g = hardsigmoid(fc2(relu(fc1(s)))); y = x * g per channel.
// fc1 (C -> squeeze) and fc2 (squeeze -> C) are torchvision's 1x1 convolutions with bias.
// Parameters: W1 (squeeze, C), b1 (squeeze), W2 (C, squeeze), b2 (C).
// Init: torchvision's kaiming_normal_(fan_out): W1 ~ N(0, 2/squeeze), W2 ~ N(0, 2/C), b = 0.
class SqueezeExcite final : public Layer {
 public:
  SqueezeExcite(Shape input, int squeeze_channels);
  std::string Name() const override;
  Shape OutputShape(Shape input) const override;
  size_t NumParams() const override { return 2 * size_t(c_) * sq_ + sq_ + c_; }
  void Bind(float* params, float* grads) override;
  void Init(Rng& rng) override;
  void Forward(const Matrix& input, Matrix& output, bool training) override;
  void Backward(const Matrix& input, const Matrix& doutput, Matrix* dinput) override;

 private:
  MatrixMap W1(float* base) const { return {base, sq_, c_}; }
  VectorMap b1(float* base) const { return {base + size_t(sq_) * c_, sq_}; }
  MatrixMap W2(float* base) const { return {base + size_t(sq_) * (c_ + 1), c_, sq_}; }
  VectorMap b2(float* base) const { return {base + size_t(sq_) * (2 * c_ + 1), c_}; }

  Shape in_;
  int c_, sq_;
  float* params_ = nullptr;
  float* grads_ = nullptr;
  // (N, C) or (N, squeeze) per batch, reused: the pooled input, pre-activations and the gate.
  Matrix pooled_, z1_, a1_, z2_, gate_, dgate_, da1_, dpooled_;
};

}  // namespace p2p::ml
