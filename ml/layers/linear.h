// Linear: y = x W^T + b.
#pragma once

#include "ml/layer.h"

namespace p2p::ml {

// Parameters: W (out, in) row-major, then b (out). Init: W ~ N(0, 0.01^2), b = 0 (torchvision's
// MobileNets, VGG), or with torch_default_init W, b ~ U(+-1/sqrt(in)) (nn.Linear's own, which
// torchvision's ResNet keeps).
class Linear final : public Layer {
 public:
  Linear(int in, int out, bool torch_default_init = false);
  std::string Name() const override;
  Shape OutputShape(Shape input) const override;
  size_t NumParams() const override { return size_t(out_) * in_ + out_; }
  void Bind(float* params, float* grads) override;
  void Init(Rng& rng) override;
  // input (N, in) -> output (N, out).
  void Forward(const Matrix& input, Matrix& output, bool training) override;
  void Backward(const Matrix& input, const Matrix& doutput, Matrix* dinput) override;

  static constexpr float kInitStd = 0.01f;

 private:
  MatrixMap W() const { return {params_, out_, in_}; }
  VectorMap b() const { return {params_ + size_t(out_) * in_, out_}; }
  MatrixMap dW() const { return {grads_, out_, in_}; }
  VectorMap db() const { return {grads_ + size_t(out_) * in_, out_}; }

  int in_, out_;
  bool torch_default_init_;
  float* params_ = nullptr;
  float* grads_ = nullptr;
};

}  // namespace p2p::ml
