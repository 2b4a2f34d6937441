// AdaptiveAvgPool2d to a fixed output size, as PyTorch's (torchvision's VGG pools to 7x7).
#pragma once

#include <vector>

#include "ml/layer.h"

namespace p2p::ml {

// (C, H, W) -> (C, OH, OW): output (i, j) is the mean over rows [floor(i H/OH), ceil((i+1) H/OH))
// and the same for columns, PyTorch's windows. They may overlap, and where the input is smaller
// than the output they repeat values (a 1x1 map pooled to 7x7 is 49 copies).
class AdaptiveAvgPool2d final : public Layer {
 public:
  AdaptiveAvgPool2d(Shape input, int out_h, int out_w);
  std::string Name() const override;
  Shape OutputShape(Shape input) const override;
  void Forward(const Matrix& input, Matrix& output, bool training) override;
  void Backward(const Matrix& input, const Matrix& doutput, Matrix* dinput) override;

 private:
  struct Window {
    int begin, end;
  };
  Shape in_, out_;
  std::vector<Window> rows_, cols_;  // per output row / column
};

}  // namespace p2p::ml
