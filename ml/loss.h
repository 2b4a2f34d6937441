// Losses over a batch of model outputs (N, classes) and integer labels.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "common/status.h"
#include "ml/tensor.h"

namespace p2p::ml {

enum class LossKind {
  kCrossEntropy,  // "cross_entropy": softmax cross-entropy on raw logits
  kNll,           // "NLL": negative log-likelihood on log-probabilities (model ends in LogSoftmax)
};

Result<LossKind> ParseLoss(const std::string& name);  // error lists the valid names
std::string LossName(LossKind kind);

class Loss {
 public:
  virtual ~Loss() = default;
  // Mean loss over the batch; writes d(mean loss)/d(output) into `doutput` (same shape as output).
  // Labels must be in [0, classes) (P2P_CHECK).
  virtual float Compute(const Matrix& output, std::span<const int32_t> labels,
                        Matrix& doutput) const = 0;
  // Sum of per-sample losses, no gradient (for evaluation).
  virtual double Sum(const Matrix& output, std::span<const int32_t> labels) const = 0;
};

std::unique_ptr<Loss> MakeLoss(LossKind kind);

}  // namespace p2p::ml
