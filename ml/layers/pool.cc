#include "ml/layers/pool.h"

#include <fmt/format.h>

#include <algorithm>

#include "common/status.h"

namespace p2p::ml {

namespace {

// PyTorch's pooling output size without padding: floor or ceil of (in - k) / s, plus one; in
// ceil mode a window that would start past the input is dropped.
int PoolOutExtent(int in, int kernel, int stride, bool ceil_mode) {
  if (in < kernel) return 0;
  int out = (in - kernel + (ceil_mode ? stride - 1 : 0)) / stride + 1;
  if (ceil_mode && (out - 1) * stride >= in) --out;
  return out;
}

}  // namespace

MaxPool2d::MaxPool2d(Shape input, int kernel, int stride, bool ceil_mode)
    : in_(input), kernel_(kernel), stride_(stride), ceil_mode_(ceil_mode) {
  P2P_CHECK(kernel > 0 && stride > 0, "maxpool k={} s={}", kernel, stride);
  out_ = {in_.c, PoolOutExtent(in_.h, kernel, stride, ceil_mode),
          PoolOutExtent(in_.w, kernel, stride, ceil_mode)};
  P2P_CHECK(out_.h > 0 && out_.w > 0, "input {} too small for maxpool kernel {}", in_.ToString(),
            kernel);
}

std::string MaxPool2d::Name() const {
  return fmt::format("maxpool2d(k{} s{}{})", kernel_, stride_, ceil_mode_ ? " ceil" : "");
}

Shape MaxPool2d::OutputShape(Shape input) const {
  P2P_CHECK(input == in_, "maxpool built for {}, got {}", in_.ToString(), input.ToString());
  return out_;
}

void MaxPool2d::Forward(const Matrix& input, Matrix& output, bool /*training*/) {
  P2P_CHECK(input.cols() == in_.size(), "maxpool input has {} columns, want {}", input.cols(),
            in_.size());
  output.resize(input.rows(), out_.size());
  argmax_.resize(size_t(input.rows()) * out_.size());
  for (Eigen::Index n = 0; n < input.rows(); ++n) {
    PoolSample(input.row(n).data(), output.row(n).data(), argmax_.data() + n * out_.size());
  }
}

// Ties keep the first maximum in row-major window order. (2x2 special cases - branch-free C++,
// and AVX2 intrinsics for 8 windows - measured no faster on LeNet's 14- and 5-wide rows.)
void MaxPool2d::PoolSample(const float* x, float* y, int32_t* arg) const {
  for (int c = 0; c < out_.c; ++c) {
    for (int oh = 0; oh < out_.h; ++oh) {
      const int kh = std::min(kernel_, in_.h - oh * stride_);  // < kernel_: a ceil-mode edge
      for (int ow = 0; ow < out_.w; ++ow) {
        const int kw = std::min(kernel_, in_.w - ow * stride_);
        const int base = (c * in_.h + oh * stride_) * in_.w + ow * stride_;
        int best = base;
        for (int ki = 0; ki < kh; ++ki) {
          for (int kj = 0; kj < kw; ++kj) {
            const int i = base + ki * in_.w + kj;
            if (x[i] > x[best]) best = i;
          }
        }
        *y++ = x[best];
        *arg++ = best;
      }
    }
  }
}

void MaxPool2d::Backward(const Matrix& input, const Matrix& doutput, Matrix* dinput) {
  if (dinput == nullptr) return;
  dinput->setZero(input.rows(), in_.size());
  const int32_t* arg = argmax_.data();
  for (Eigen::Index n = 0; n < input.rows(); ++n) {
    const float* dy = doutput.row(n).data();
    float* dx = dinput->row(n).data();
    for (int j = 0; j < out_.size(); ++j) dx[arg[j]] += dy[j];
    arg += out_.size();
  }
}

}  // namespace p2p::ml
