// Composite layers that make a model a graph where it has to be one: a chain (Sequential), a
// residual sum (Residual) and a channel concatenation of parallel branches (Concat). Each is a
// Layer, so they nest (a Residual's body is a Sequential of convs, BatchNorms and SE blocks).
#pragma once

#include <memory>
#include <vector>

#include "ml/layer.h"

namespace p2p::ml {

using Layers = std::vector<std::unique_ptr<Layer>>;

// Layers applied in order. Parameters and buffers are the children's, concatenated in order.
// Activations and deltas of inner layers are kept in per-layer matrices reused across calls.
class Sequential final : public Layer {
 public:
  Sequential(Shape input, Layers layers);
  std::string Name() const override;
  Shape OutputShape(Shape input) const override;
  size_t NumParams() const override { return num_params_; }
  void Bind(float* params, float* grads) override;
  size_t NumBuffers() const override { return num_buffers_; }
  void BindBuffers(float* buffers) override;
  void Init(Rng& rng) override;
  void Forward(const Matrix& input, Matrix& output, bool training) override;
  void Backward(const Matrix& input, const Matrix& doutput, Matrix* dinput) override;

  bool empty() const { return layers_.empty(); }
  const Layers& layers() const { return layers_; }

 private:
  Layers layers_;
  std::vector<Shape> shapes_;  // shapes_[i]: input of layer i; back(): the output
  size_t num_params_ = 0, num_buffers_ = 0;
  std::vector<Matrix> acts_;    // acts_[i]: output of layer i (i < n-1; the last writes output)
  std::vector<Matrix> deltas_;  // deltas_[i]: d loss / d acts_[i]
};

// y = body(x) + shortcut(x); an empty shortcut is the identity (ResNet's basic block without
// downsampling, MobileNetV2/V3's inverted residual). The shapes of both must agree.
class Residual final : public Layer {
 public:
  Residual(std::unique_ptr<Sequential> body, std::unique_ptr<Sequential> shortcut);
  std::string Name() const override;
  Shape OutputShape(Shape input) const override;
  size_t NumParams() const override;
  void Bind(float* params, float* grads) override;
  size_t NumBuffers() const override;
  void BindBuffers(float* buffers) override;
  void Init(Rng& rng) override;
  void Forward(const Matrix& input, Matrix& output, bool training) override;
  void Backward(const Matrix& input, const Matrix& doutput, Matrix* dinput) override;

 private:
  std::unique_ptr<Sequential> body_, shortcut_;  // shortcut_ may be empty (identity)
  Matrix short_out_, dbody_, dshort_;
};

// Runs every branch on the same input and concatenates their outputs along channels, in branch
// order (torch.cat(dim=1), SqueezeNet's fire module). Branches must agree on H and W.
class Concat final : public Layer {
 public:
  Concat(Shape input, std::vector<std::unique_ptr<Sequential>> branches);
  std::string Name() const override;
  Shape OutputShape(Shape input) const override;
  size_t NumParams() const override;
  void Bind(float* params, float* grads) override;
  size_t NumBuffers() const override;
  void BindBuffers(float* buffers) override;
  void Init(Rng& rng) override;
  void Forward(const Matrix& input, Matrix& output, bool training) override;
  void Backward(const Matrix& input, const Matrix& doutput, Matrix* dinput) override;

 private:
  Shape in_, out_;
  std::vector<std::unique_ptr<Sequential>> branches_;
  std::vector<Matrix> outs_, douts_;
  Matrix dx_;
};

}  // namespace p2p::ml
