#include "ml/layers/dropout.h"

#include <fmt/format.h>

#include <cmath>

#include "common/status.h"

namespace p2p::ml {

Dropout::Dropout(float p)
    : p_(p), keep_threshold_(static_cast<uint64_t>(std::llround((1.0 - p) * 0x1.0p24))) {
  P2P_CHECK(p >= 0.0f && p < 1.0f, "dropout probability {} not in [0, 1)", p);
}

std::string Dropout::Name() const { return fmt::format("dropout(p={})", p_); }

void Dropout::Forward(const Matrix& input, Matrix& output, bool training) {
  masked_ = training && p_ > 0.0f;
  if (!masked_) {
    output = input;
    return;
  }
  const float scale = 1.0f / (1.0f - p_);
  mask_.resize(input.rows(), input.cols());
  float* mask = mask_.data();
  for (Eigen::Index i = 0; i < mask_.size(); ++i) {
    mask[i] = (mask_rng_() >> 40) < keep_threshold_ ? scale : 0.0f;
  }
  output.resize(input.rows(), input.cols());
  output.array() = input.array() * mask_.array();
}

void Dropout::Backward(const Matrix& /*input*/, const Matrix& doutput, Matrix* dinput) {
  if (dinput == nullptr) return;
  if (!masked_) {
    *dinput = doutput;
    return;
  }
  dinput->resize(doutput.rows(), doutput.cols());
  dinput->array() = doutput.array() * mask_.array();
}

}  // namespace p2p::ml
