// Average pooling: AvgPool2d (no padding) and global average pooling (AdaptiveAvgPool2d(1)).
#pragma once

#include "ml/layer.h"

namespace p2p::ml {

// Mean over kernel x kernel windows moved by `stride`, no padding.
class AvgPool2d final : public Layer {
 public:
  AvgPool2d(Shape input, int kernel, int stride);
  std::string Name() const override;
  Shape OutputShape(Shape input) const override;
  void Forward(const Matrix& input, Matrix& output, bool training) override;
  void Backward(const Matrix& input, const Matrix& doutput, Matrix* dinput) override;

 private:
  Shape in_, out_;
  int kernel_, stride_;
};

// (C, H, W) -> (C, 1, 1): the mean of each channel.
class GlobalAvgPool final : public Layer {
 public:
  explicit GlobalAvgPool(Shape input) : in_(input) {}
  std::string Name() const override { return "global_avg_pool"; }
  Shape OutputShape(Shape input) const override;
  void Forward(const Matrix& input, Matrix& output, bool training) override;
  void Backward(const Matrix& input, const Matrix& doutput, Matrix* dinput) override;

 private:
  Shape in_;
};

}  // namespace p2p::ml
