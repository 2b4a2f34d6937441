#include "ml/layers/batchnorm.h"

#include <fmt/format.h>

#include <cmath>

#include "common/status.h"

namespace p2p::ml {

BatchNorm2d::BatchNorm2d(Shape input, float eps, float momentum)
    : in_(input),
      eps_(eps),
      momentum_(momentum),
      mean_(input.c),
      inv_std_(input.c),
      dgamma_(input.c),
      dbeta_(input.c) {
  P2P_CHECK(input.size() > 0, "batchnorm input {}", input.ToString());
}

std::string BatchNorm2d::Name() const {
  return fmt::format("batchnorm2d({}, eps {:g}, momentum {:g})", in_.c, eps_, momentum_);
}

Shape BatchNorm2d::OutputShape(Shape input) const {
  P2P_CHECK(input == in_, "batchnorm built for {}, got {}", in_.ToString(), input.ToString());
  return in_;
}

void BatchNorm2d::Bind(float* params, float* grads) {
  params_ = params;
  grads_ = grads;
}

void BatchNorm2d::Init(Rng& /*rng*/) {
  const int c = in_.c;
  std::fill(params_, params_ + c, 1.0f);
  std::fill(params_ + c, params_ + 2 * c, 0.0f);
  if (buffers_ == nullptr) return;  // a layer checked on its own may have no buffers bound
  std::fill(buffers_, buffers_ + c, 0.0f);
  std::fill(buffers_ + c, buffers_ + 2 * c, 1.0f);
}

// Sums in double: a channel of a batch-64 32x32 map has 65536 values, and float sums of squares
// lose the small variances of late layers.
void BatchNorm2d::BatchStats(const Matrix& input) {
  const int hw = in_.h * in_.w;
  const double count = double(input.rows()) * hw;
  for (int c = 0; c < in_.c; ++c) {
    double sum = 0, sum_sq = 0;
    for (Eigen::Index n = 0; n < input.rows(); ++n) {
      const auto plane = Eigen::Map<const Eigen::ArrayXf>(input.row(n).data() + c * hw, hw);
      sum += plane.cast<double>().sum();
      sum_sq += plane.cast<double>().square().sum();
    }
    const double mean = sum / count;
    const double var = std::max(0.0, sum_sq / count - mean * mean);
    mean_[c] = float(mean);
    inv_std_[c] = float(1.0 / std::sqrt(var + eps_));
    if (buffers_ == nullptr || count < 2) continue;
    float& running_mean = buffers_[c];
    float& running_var = buffers_[in_.c + c];
    running_mean = (1 - momentum_) * running_mean + momentum_ * float(mean);
    running_var = (1 - momentum_) * running_var + momentum_ * float(var * count / (count - 1));
  }
}

void BatchNorm2d::EvalStats() {
  for (int c = 0; c < in_.c; ++c) {
    mean_[c] = buffers_ == nullptr ? 0.0f : buffers_[c];
    const float var = buffers_ == nullptr ? 1.0f : buffers_[in_.c + c];
    inv_std_[c] = 1.0f / std::sqrt(var + eps_);
  }
}

void BatchNorm2d::Forward(const Matrix& input, Matrix& output, bool training) {
  P2P_CHECK(input.cols() == in_.size(), "batchnorm input has {} columns, want {}", input.cols(),
            in_.size());
  if (training) {
    BatchStats(input);
  } else {
    EvalStats();
  }
  output.resize(input.rows(), input.cols());
  const int hw = in_.h * in_.w;
  for (Eigen::Index n = 0; n < input.rows(); ++n) {
    for (int c = 0; c < in_.c; ++c) {
      const float scale = params_[c] * inv_std_[c];
      const float shift = params_[in_.c + c] - mean_[c] * scale;
      Eigen::Map<Eigen::ArrayXf>(output.row(n).data() + c * hw, hw) =
          Eigen::Map<const Eigen::ArrayXf>(input.row(n).data() + c * hw, hw) * scale + shift;
    }
  }
}

// With xhat = (x - mean) * inv_std and M values per channel:
//   dgamma = sum(dy * xhat), dbeta = sum(dy),
//   dx = gamma * inv_std / M * (M * dy - dbeta - xhat * dgamma).
// Backward assumes the last Forward ran in training mode (the batch statistics are used).
void BatchNorm2d::Backward(const Matrix& input, const Matrix& doutput, Matrix* dinput) {
  const int hw = in_.h * in_.w;
  const float count = float(input.rows()) * float(hw);
  for (int c = 0; c < in_.c; ++c) {
    double sum_dy = 0, sum_dy_xhat = 0;
    for (Eigen::Index n = 0; n < input.rows(); ++n) {
      const auto x = Eigen::Map<const Eigen::ArrayXf>(input.row(n).data() + c * hw, hw);
      const auto dy = Eigen::Map<const Eigen::ArrayXf>(doutput.row(n).data() + c * hw, hw);
      sum_dy += dy.sum();
      sum_dy_xhat += (dy * (x - mean_[c])).sum() * inv_std_[c];
    }
    dbeta_[c] = float(sum_dy);
    dgamma_[c] = float(sum_dy_xhat);
    grads_[c] += dgamma_[c];
    grads_[in_.c + c] += dbeta_[c];
  }
  if (dinput == nullptr) return;
  dinput->resize(input.rows(), input.cols());
  for (Eigen::Index n = 0; n < input.rows(); ++n) {
    for (int c = 0; c < in_.c; ++c) {
      const float k = params_[c] * inv_std_[c] / count;
      const auto x = Eigen::Map<const Eigen::ArrayXf>(input.row(n).data() + c * hw, hw);
      const auto dy = Eigen::Map<const Eigen::ArrayXf>(doutput.row(n).data() + c * hw, hw);
      Eigen::Map<Eigen::ArrayXf>(dinput->row(n).data() + c * hw, hw) =
          k * (count * dy - dbeta_[c] - (x - mean_[c]) * (inv_std_[c] * dgamma_[c]));
    }
  }
}

}  // namespace p2p::ml
