// 2-D max pooling.
#pragma once

#include <cstdint>
#include <vector>

#include "ml/layers/conv2d.h"

namespace p2p::ml {

// Max over kernel x kernel windows moved by `stride`, no padding; the gradient goes to the first
// maximum of each window (overlapping windows accumulate). `ceil_mode` as PyTorch's: one more
// output where a last, partial window still starts inside the input; it takes the max of the
// part inside.
class MaxPool2d final : public Layer {
 public:
  MaxPool2d(Shape input, int kernel, int stride, bool ceil_mode = false);
  std::string Name() const override;
  Shape OutputShape(Shape input) const override;
  void Forward(const Matrix& input, Matrix& output, bool training) override;
  void Backward(const Matrix& input, const Matrix& doutput, Matrix* dinput) override;

 private:
  // One sample: x (in.size()) -> y (out.size()) and arg (out.size(), indices into x).
  void PoolSample(const float* x, float* y, int32_t* arg) const;

  Shape in_, out_;
  int kernel_, stride_;
  bool ceil_mode_;
  std::vector<int32_t> argmax_;  // (N, out.size()): index within the sample's input row
};

}  // namespace p2p::ml
