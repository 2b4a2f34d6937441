#include "ml/layers/hard_activation.h"

namespace p2p::ml {

void ReLU6::Forward(const Matrix& input, Matrix& output, bool /*training*/) {
  output.resize(input.rows(), input.cols());
  output.array() = input.array().max(0.0f).min(6.0f);
}

void ReLU6::Backward(const Matrix& input, const Matrix& doutput, Matrix* dinput) {
  if (dinput == nullptr) return;
  dinput->resize(input.rows(), input.cols());
  dinput->array() = (input.array() > 0.0f && input.array() < 6.0f).select(doutput.array(), 0.0f);
}

void Hardsigmoid::Forward(const Matrix& input, Matrix& output, bool /*training*/) {
  output.resize(input.rows(), input.cols());
  output.array() = (input.array() + 3.0f).max(0.0f).min(6.0f) * (1.0f / 6.0f);
}

void Hardsigmoid::Backward(const Matrix& input, const Matrix& doutput, Matrix* dinput) {
  if (dinput == nullptr) return;
  dinput->resize(input.rows(), input.cols());
  dinput->array() =
      (input.array() > -3.0f && input.array() < 3.0f).select(doutput.array() * (1.0f / 6.0f), 0.0f);
}

void Hardswish::Forward(const Matrix& input, Matrix& output, bool /*training*/) {
  output.resize(input.rows(), input.cols());
  output.array() = input.array() * (input.array() + 3.0f).max(0.0f).min(6.0f) * (1.0f / 6.0f);
}

void Hardswish::Backward(const Matrix& input, const Matrix& doutput, Matrix* dinput) {
  if (dinput == nullptr) return;
  dinput->resize(input.rows(), input.cols());
  const auto x = input.array();
  dinput->array() = (x < -3.0f).select(
      0.0f, (x <= 3.0f).select(doutput.array() * (x * (1.0f / 3.0f) + 0.5f), doutput.array()));
}

}  // namespace p2p::ml
