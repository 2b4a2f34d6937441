// BatchNorm2d: per-channel normalisation over (N, H, W), as PyTorch's nn.BatchNorm2d.
#pragma once

#include <vector>

#include "ml/layer.h"

namespace p2p::ml {

// Training: y = gamma * (x - mean_B) / sqrt(var_B + eps) + beta with the batch's mean and biased
// variance per channel, and running_mean/var move towards the batch's mean and *unbiased*
// variance by `momentum` (PyTorch's rule). Evaluation (training=false) uses the running stats.
// Parameters: gamma (C), beta (C). Buffers: running_mean (C), running_var (C).
// Init: gamma 1, beta 0, running mean 0, running var 1 (torchvision's).
// A batch with one value per channel (batch 1 after a global pool) normalises to beta, as its
// variance is 0, and leaves the running statistics alone: PyTorch refuses such a batch, and the
// unbiased variance it would record is undefined.
class BatchNorm2d final : public Layer {
 public:
  static constexpr float kMomentum = 0.1f;  // PyTorch's defaults
  static constexpr float kEps = 1e-5f;

  // MobileNetV3 in torchvision uses eps 1e-3, momentum 0.01.
  explicit BatchNorm2d(Shape input, float eps = kEps, float momentum = kMomentum);
  std::string Name() const override;
  Shape OutputShape(Shape input) const override;
  size_t NumParams() const override { return 2 * size_t(in_.c); }
  void Bind(float* params, float* grads) override;
  size_t NumBuffers() const override { return 2 * size_t(in_.c); }
  void BindBuffers(float* buffers) override { buffers_ = buffers; }
  void Init(Rng& rng) override;
  void Forward(const Matrix& input, Matrix& output, bool training) override;
  void Backward(const Matrix& input, const Matrix& doutput, Matrix* dinput) override;

 private:
  void BatchStats(const Matrix& input);  // mean_, inv_std_ from the batch; updates running stats
  void EvalStats();                      // mean_, inv_std_ from the running stats

  Shape in_;
  float eps_, momentum_;
  float* params_ = nullptr;  // gamma (C), beta (C)
  float* grads_ = nullptr;
  float* buffers_ = nullptr;  // running_mean (C), running_var (C)
  // Per-channel scratch, sized once: Forward's statistics are what Backward differentiates.
  std::vector<float> mean_, inv_std_, dgamma_, dbeta_;
};

}  // namespace p2p::ml
