#include "ml/layers/squeeze_excite.h"

#include <fmt/format.h>

#include <cmath>

#include "common/status.h"
#include "ml/layers/hard_activation.h"
#include "ml/random.h"

namespace p2p::ml {

SqueezeExcite::SqueezeExcite(Shape input, int squeeze_channels)
    : in_(input), c_(input.c), sq_(squeeze_channels) {
  P2P_CHECK(squeeze_channels > 0 && input.size() > 0, "squeeze-excite {} squeeze {}",
            input.ToString(), squeeze_channels);
}

std::string SqueezeExcite::Name() const { return fmt::format("se({}->{}->{})", c_, sq_, c_); }

Shape SqueezeExcite::OutputShape(Shape input) const {
  P2P_CHECK(input == in_, "squeeze-excite built for {}, got {}", in_.ToString(), input.ToString());
  return in_;
}

void SqueezeExcite::Bind(float* params, float* grads) {
  params_ = params;
  grads_ = grads;
}

void SqueezeExcite::Init(Rng& rng) {
  FillNormal(rng, std::sqrt(2.0f / float(sq_)), {params_, size_t(sq_) * c_});
  b1(params_).setZero();
  FillNormal(rng, std::sqrt(2.0f / float(c_)), {W2(params_).data(), size_t(c_) * sq_});
  b2(params_).setZero();
}

void SqueezeExcite::Forward(const Matrix& input, Matrix& output, bool /*training*/) {
  P2P_CHECK(input.cols() == in_.size(), "squeeze-excite input has {} columns, want {}",
            input.cols(), in_.size());
  const int hw = in_.h * in_.w;
  const Eigen::Index n = input.rows();
  pooled_.resize(n, c_);
  MatrixMap(pooled_.data(), n * c_, 1) = ConstMatrixMap(input.data(), n * c_, hw).rowwise().mean();
  z1_.noalias() = pooled_ * W1(params_).transpose();
  z1_.rowwise() += b1(params_).transpose();
  a1_ = z1_.array().max(0.0f);
  z2_.noalias() = a1_ * W2(params_).transpose();
  z2_.rowwise() += b2(params_).transpose();
  gate_ = z2_.unaryExpr([](float v) { return HardsigmoidOf(v); });
  output.resize(n, input.cols());
  // Every (sample, channel) plane scaled by its gate: a (N*C, H*W) view times a column.
  MatrixMap(output.data(), n * c_, hw) =
      ConstMatrixMap(input.data(), n * c_, hw).array().colwise() *
      ConstMatrixMap(gate_.data(), n * c_, 1).array().col(0);
}

void SqueezeExcite::Backward(const Matrix& input, const Matrix& doutput, Matrix* dinput) {
  const int hw = in_.h * in_.w;
  const Eigen::Index n = input.rows();
  const ConstMatrixMap x(input.data(), n * c_, hw), dy(doutput.data(), n * c_, hw);
  dgate_.resize(n, c_);
  MatrixMap(dgate_.data(), n * c_, 1) = (x.array() * dy.array()).rowwise().sum().matrix();
  // dgate_ becomes d loss / d z2, then reused for the chain below.
  dgate_.array() *= z2_.unaryExpr([](float v) { return HardsigmoidGrad(v); }).array();
  W2(grads_).noalias() += dgate_.transpose() * a1_;
  b2(grads_) += dgate_.colwise().sum().transpose();
  da1_.noalias() = dgate_ * W2(params_);
  da1_.array() *= (z1_.array() > 0.0f).cast<float>();
  W1(grads_).noalias() += da1_.transpose() * pooled_;
  b1(grads_) += da1_.colwise().sum().transpose();
  if (dinput == nullptr) return;
  dpooled_.noalias() = da1_ * W1(params_);
  dinput->resize(n, input.cols());
  MatrixMap(dinput->data(), n * c_, hw) =
      (dy.array().colwise() * ConstMatrixMap(gate_.data(), n * c_, 1).array().col(0)).colwise() +
      ConstMatrixMap(dpooled_.data(), n * c_, 1).array().col(0) * (1.0f / float(hw));
}

}  // namespace p2p::ml
