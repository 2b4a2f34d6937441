#include "ml/layers/adaptive_avg_pool.h"

#include <fmt/format.h>

#include "common/status.h"

namespace p2p::ml {
AdaptiveAvgPool2d::AdaptiveAvgPool2d(Shape input, int out_h, int out_w)
    : in_(input), out_{input.c, out_h, out_w} {
  P2P_CHECK(out_h > 0 && out_w > 0 && in_.h > 0 && in_.w > 0, "adaptive avgpool {} -> {}x{}",
            in_.ToString(), out_h, out_w);
  // end = ceil((i + 1) * in / out)
  for (int i = 0; i < out_h; ++i) {
    rows_.push_back(
        {int((int64_t(i) * in_.h) / out_h), int((int64_t(i + 1) * in_.h + out_h - 1) / out_h)});
  }
  for (int j = 0; j < out_w; ++j) {
    cols_.push_back(
        {int((int64_t(j) * in_.w) / out_w), int((int64_t(j + 1) * in_.w + out_w - 1) / out_w)});
  }
}

std::string AdaptiveAvgPool2d::Name() const {
  return fmt::format("adaptive_avgpool({}x{})", out_.h, out_.w);
}

Shape AdaptiveAvgPool2d::OutputShape(Shape input) const {
  P2P_CHECK(input == in_, "adaptive avgpool built for {}, got {}", in_.ToString(),
            input.ToString());
  return out_;
}

void AdaptiveAvgPool2d::Forward(const Matrix& input, Matrix& output, bool /*training*/) {
  P2P_CHECK(input.cols() == in_.size(), "adaptive avgpool input has {} columns, want {}",
            input.cols(), in_.size());
  output.resize(input.rows(), out_.size());
  for (Eigen::Index n = 0; n < input.rows(); ++n) {
    const float* x = input.row(n).data();
    float* y = output.row(n).data();
    for (int c = 0; c < in_.c; ++c) {
      const float* plane = x + c * in_.h * in_.w;
      for (const Window& r : rows_) {
        for (const Window& q : cols_) {
          float sum = 0;
          for (int i = r.begin; i < r.end; ++i)
            for (int j = q.begin; j < q.end; ++j) sum += plane[i * in_.w + j];
          *y++ = sum / float((r.end - r.begin) * (q.end - q.begin));
        }
      }
    }
  }
}

void AdaptiveAvgPool2d::Backward(const Matrix& input, const Matrix& doutput, Matrix* dinput) {
  if (dinput == nullptr) return;
  dinput->setZero(input.rows(), in_.size());
  for (Eigen::Index n = 0; n < input.rows(); ++n) {
    const float* dy = doutput.row(n).data();
    float* dx = dinput->row(n).data();
    for (int c = 0; c < in_.c; ++c) {
      float* plane = dx + c * in_.h * in_.w;
      for (const Window& r : rows_) {
        for (const Window& q : cols_) {
          const float g = *dy++ / float((r.end - r.begin) * (q.end - q.begin));
          for (int i = r.begin; i < r.end; ++i)
            for (int j = q.begin; j < q.end; ++j) plane[i * in_.w + j] += g;
        }
      }
    }
  }
}

}  // namespace p2p::ml
