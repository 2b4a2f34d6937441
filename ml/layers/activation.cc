#include "ml/layers/activation.h"

namespace p2p::ml {

void ReLU::Forward(const Matrix& input, Matrix& output, bool /*training*/) {
  output.resize(input.rows(), input.cols());
  output.array() = input.array().max(0.0f);
}

void ReLU::Backward(const Matrix& input, const Matrix& doutput, Matrix* dinput) {
  if (dinput == nullptr) return;
  dinput->resize(input.rows(), input.cols());
  dinput->array() = (input.array() > 0.0f).select(doutput.array(), 0.0f);
}

void LogSoftmax::Forward(const Matrix& input, Matrix& output, bool /*training*/) {
  output.resize(input.rows(), input.cols());
  for (Eigen::Index n = 0; n < input.rows(); ++n) {
    const float max = input.row(n).maxCoeff();
    const float lse = max + std::log((input.row(n).array() - max).exp().sum());
    output.row(n).array() = input.row(n).array() - lse;
  }
  output_ = output;
}

void LogSoftmax::Backward(const Matrix& input, const Matrix& doutput, Matrix* dinput) {
  if (dinput == nullptr) return;
  dinput->resize(input.rows(), input.cols());
  for (Eigen::Index n = 0; n < input.rows(); ++n) {
    const float dsum = doutput.row(n).sum();
    dinput->row(n).array() = doutput.row(n).array() - output_.row(n).array().exp() * dsum;
  }
}

void Flatten::Forward(const Matrix& input, Matrix& output, bool /*training*/) { output = input; }

void Flatten::Backward(const Matrix& /*input*/, const Matrix& doutput, Matrix* dinput) {
  if (dinput != nullptr) *dinput = doutput;
}

}  // namespace p2p::ml
