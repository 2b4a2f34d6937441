// Depthwise 2-D convolution (groups == in_c == out_c) by a direct kernel.
#pragma once

#include "ml/layer.h"
#include "ml/layers/conv2d.h"

namespace p2p::ml {

// Each channel is convolved with its own k x k filter: PyTorch's Conv2d(C, C, k, stride, padding,
// groups=C). As a grouped im2col + GEMM it would be C GEMMs of (1 x k*k) by (k*k x H*W): all
// copy, no reuse. Here every channel is zero-padded once into a small plane and the filter is
// applied by loops over output rows that the compiler vectorises along the width (stride 1).
// Parameters: W (C, k*k) row-major (PyTorch's (C, 1, k, k)), then b (C) if it has a bias.
class DepthwiseConv2d final : public Layer {
 public:
  DepthwiseConv2d(Shape input, int kernel, int stride, int padding, ConvOptions options = {});
  std::string Name() const override;
  Shape OutputShape(Shape input) const override;
  size_t NumParams() const override { return size_t(in_.c) * (kk() + (bias_ ? 1 : 0)); }
  void Bind(float* params, float* grads) override;
  void Init(Rng& rng) override;
  void Forward(const Matrix& input, Matrix& output, bool training) override;
  void Backward(const Matrix& input, const Matrix& doutput, Matrix* dinput) override;

 private:
  int kk() const { return kernel_ * kernel_; }
  int hp() const { return in_.h + 2 * padding_; }
  int wp() const { return in_.w + 2 * padding_; }
  void PadPlane(const float* x);  // one channel -> interior of plane_ (border stays 0)
  void ForwardPlane(const float* w, float bias, float* y) const;
  // dw += dy (*) plane_, and dplane_ = W^T-correlation of dy (if want_dx).
  void BackwardPlane(const float* w, const float* dy, float* dw, bool want_dx);

  Shape in_, out_;
  int kernel_, stride_, padding_;
  bool bias_;
  WeightInit init_;
  float* params_ = nullptr;
  float* grads_ = nullptr;
  Eigen::VectorXf plane_;   // (hp, wp): one zero-bordered input channel
  Eigen::VectorXf dplane_;  // (hp, wp): its gradient
};

}  // namespace p2p::ml
