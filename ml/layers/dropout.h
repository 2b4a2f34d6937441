// Inverted dropout with a deterministic, layer-owned mask generator.
#pragma once

#include <cstdint>

#include "ml/layer.h"

namespace p2p::ml {

// Training: each value is zeroed with probability p and survivors are scaled by 1/(1-p), so the
// expected output equals the input. Not training (evaluation): identity. The mask stream is seeded
// in Init() with one draw from the model's init Rng, so the same model seed gives the same masks
// on every peer and platform (only raw mt19937_64 outputs are used). Requires 0 <= p < 1.
class Dropout final : public Layer {
 public:
  explicit Dropout(float p);
  std::string Name() const override;
  Shape OutputShape(Shape input) const override { return input; }
  void Init(Rng& rng) override { mask_rng_.seed(rng()); }
  void Forward(const Matrix& input, Matrix& output, bool training) override;
  void Backward(const Matrix& input, const Matrix& doutput, Matrix* dinput) override;

 private:
  float p_;
  uint64_t keep_threshold_;  // keep a value iff the top 24 bits of a draw are below this
  Rng mask_rng_;
  bool masked_ = false;  // whether the last Forward applied mask_
  Matrix mask_;          // 0 or 1/(1-p), the shape of the last training input
};

}  // namespace p2p::ml
