#include "ml/layers/avg_pool.h"

#include <fmt/format.h>

#include "common/status.h"
#include "ml/layers/conv2d.h"

namespace p2p::ml {

AvgPool2d::AvgPool2d(Shape input, int kernel, int stride)
    : in_(input), kernel_(kernel), stride_(stride) {
  P2P_CHECK(kernel > 0 && stride > 0, "avgpool kernel {} stride {}", kernel, stride);
  out_ = {in_.c, ConvOutExtent(in_.h, kernel, stride, 0), ConvOutExtent(in_.w, kernel, stride, 0)};
  P2P_CHECK(out_.h > 0 && out_.w > 0, "input {} too small for avgpool kernel {}", in_.ToString(),
            kernel);
}

std::string AvgPool2d::Name() const { return fmt::format("avgpool({}, s{})", kernel_, stride_); }

Shape AvgPool2d::OutputShape(Shape input) const {
  P2P_CHECK(input == in_, "avgpool built for {}, got {}", in_.ToString(), input.ToString());
  return out_;
}

void AvgPool2d::Forward(const Matrix& input, Matrix& output, bool /*training*/) {
  P2P_CHECK(input.cols() == in_.size(), "avgpool input has {} columns, want {}", input.cols(),
            in_.size());
  output.resize(input.rows(), out_.size());
  const float scale = 1.0f / float(kernel_ * kernel_);
  for (Eigen::Index n = 0; n < input.rows(); ++n) {
    const float* x = input.row(n).data();
    float* y = output.row(n).data();
    for (int c = 0; c < out_.c; ++c) {
      for (int oh = 0; oh < out_.h; ++oh) {
        for (int ow = 0; ow < out_.w; ++ow) {
          const float* window = x + (c * in_.h + oh * stride_) * in_.w + ow * stride_;
          float sum = 0;
          for (int ki = 0; ki < kernel_; ++ki)
            for (int kj = 0; kj < kernel_; ++kj) sum += window[ki * in_.w + kj];
          *y++ = sum * scale;
        }
      }
    }
  }
}

void AvgPool2d::Backward(const Matrix& input, const Matrix& doutput, Matrix* dinput) {
  if (dinput == nullptr) return;
  dinput->setZero(input.rows(), in_.size());
  const float scale = 1.0f / float(kernel_ * kernel_);
  for (Eigen::Index n = 0; n < input.rows(); ++n) {
    const float* dy = doutput.row(n).data();
    float* dx = dinput->row(n).data();
    for (int c = 0; c < out_.c; ++c) {
      for (int oh = 0; oh < out_.h; ++oh) {
        for (int ow = 0; ow < out_.w; ++ow) {
          float* window = dx + (c * in_.h + oh * stride_) * in_.w + ow * stride_;
          const float g = *dy++ * scale;
          for (int ki = 0; ki < kernel_; ++ki)
            for (int kj = 0; kj < kernel_; ++kj) window[ki * in_.w + kj] += g;
        }
      }
    }
  }
}

Shape GlobalAvgPool::OutputShape(Shape input) const {
  P2P_CHECK(input == in_, "global avg pool built for {}, got {}", in_.ToString(), input.ToString());
  return {in_.c, 1, 1};
}

// Channels are contiguous runs of H*W values in each row, so the pooled (N, C) is a row-wise
// mean over a (N*C, H*W) view of the input.
void GlobalAvgPool::Forward(const Matrix& input, Matrix& output, bool /*training*/) {
  P2P_CHECK(input.cols() == in_.size(), "global avg pool input has {} columns, want {}",
            input.cols(), in_.size());
  const int hw = in_.h * in_.w;
  output.resize(input.rows(), in_.c);
  const ConstMatrixMap planes(input.data(), input.rows() * in_.c, hw);
  MatrixMap(output.data(), input.rows() * in_.c, 1) = planes.rowwise().mean();
}

void GlobalAvgPool::Backward(const Matrix& input, const Matrix& doutput, Matrix* dinput) {
  if (dinput == nullptr) return;
  const int hw = in_.h * in_.w;
  dinput->resize(input.rows(), in_.size());
  MatrixMap planes(dinput->data(), input.rows() * in_.c, hw);
  const ConstMatrixMap dy(doutput.data(), input.rows() * in_.c, 1);
  planes = (dy * (1.0f / float(hw))).replicate(1, hw);
}

}  // namespace p2p::ml
