// Parameter-free element-wise and row-wise layers: ReLU, LogSoftmax, Flatten.
#pragma once

#include "ml/layer.h"

namespace p2p::ml {

// y = max(x, 0); the gradient at exactly 0 is taken as 0 (as PyTorch).
class ReLU final : public Layer {
 public:
  std::string Name() const override { return "relu"; }
  Shape OutputShape(Shape input) const override { return input; }
  void Forward(const Matrix& input, Matrix& output, bool training) override;
  void Backward(const Matrix& input, const Matrix& doutput, Matrix* dinput) override;
};

// Row-wise y = x - logsumexp(x): each output row holds log-probabilities (for the NLL loss).
class LogSoftmax final : public Layer {
 public:
  std::string Name() const override { return "log_softmax"; }
  Shape OutputShape(Shape input) const override { return input; }
  void Forward(const Matrix& input, Matrix& output, bool training) override;
  void Backward(const Matrix& input, const Matrix& doutput, Matrix* dinput) override;

 private:
  Matrix output_;  // cached y: dx = dy - softmax(x) * rowsum(dy), softmax(x) = exp(y)
};

// (C, H, W) -> (C*H*W): our rows are already flat in that order, so values pass unchanged.
class Flatten final : public Layer {
 public:
  std::string Name() const override { return "flatten"; }
  Shape OutputShape(Shape input) const override { return {input.size(), 1, 1}; }
  void Forward(const Matrix& input, Matrix& output, bool training) override;
  void Backward(const Matrix& input, const Matrix& doutput, Matrix* dinput) override;
};

}  // namespace p2p::ml
