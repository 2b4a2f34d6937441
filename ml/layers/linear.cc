#include "ml/layers/linear.h"

#include <fmt/format.h>

#include <cmath>

#include "common/status.h"
#include "ml/random.h"

namespace p2p::ml {

Linear::Linear(int in, int out, bool torch_default_init)
    : in_(in), out_(out), torch_default_init_(torch_default_init) {
  P2P_CHECK(in > 0 && out > 0, "linear {}->{}", in, out);
}

std::string Linear::Name() const { return fmt::format("linear({}->{})", in_, out_); }

Shape Linear::OutputShape(Shape input) const {
  P2P_CHECK(input.size() == in_, "linear expects {} features, got {}", in_, input.ToString());
  return {out_, 1, 1};
}

void Linear::Bind(float* params, float* grads) {
  params_ = params;
  grads_ = grads;
}

void Linear::Init(Rng& rng) {
  if (torch_default_init_) {
    const float bound = 1.0f / std::sqrt(float(in_));
    FillUniform(rng, bound, {params_, NumParams()});
    return;
  }
  FillNormal(rng, kInitStd, {params_, size_t(out_) * in_});
  b().setZero();
}

void Linear::Forward(const Matrix& input, Matrix& output, bool /*training*/) {
  output.resize(input.rows(), out_);
  output.noalias() = input * W().transpose();
  output.rowwise() += b().transpose();
}

void Linear::Backward(const Matrix& input, const Matrix& doutput, Matrix* dinput) {
  dW().noalias() += doutput.transpose() * input;
  db().noalias() += doutput.colwise().sum().transpose();
  if (dinput == nullptr) return;
  dinput->resize(input.rows(), in_);
  dinput->noalias() = doutput * W();
}

}  // namespace p2p::ml
