#include "sync/rules/mean.h"

#include <algorithm>

namespace p2p::sync::rules {

float MeanWeight(uint64_t samples, uint64_t total) {
  return static_cast<float>(static_cast<double>(samples) / static_cast<double>(total));
}

MeanAccumulator::MeanAccumulator(std::span<float> out, uint64_t total) : out_(out), total_(total) {
  std::fill(out_.begin(), out_.end(), 0.0f);
}

void MeanAccumulator::Add(std::span<const float> grad, uint64_t samples) {
  P2P_CHECK(total_ > 0, "a sample-weighted mean over 0 samples");
  P2P_CHECK(grad.size() == out_.size(), "adding {} values to a mean of {}", grad.size(),
            out_.size());
  const float w = MeanWeight(samples, total_);
  if (w == 0.0f) return;
  float* out = out_.data();
  const float* g = grad.data();
  for (size_t i = 0; i < out_.size(); ++i) out[i] += w * g[i];
}

Status MeanRule::Aggregate(std::span<const Input> inputs, std::span<float> out) const {
  uint64_t total = 0;
  for (size_t r = 0; r < inputs.size(); ++r) {
    if (inputs[r].grad.size() != out.size()) {
      return InvalidArgument("input {} of the mean has {} values, expected {}", r,
                             inputs[r].grad.size(), out.size());
    }
    total += inputs[r].samples;
  }
  if (total == 0) return InvalidArgument("no input of the mean has samples");
  MeanAccumulator mean(out, total);
  for (const Input& in : inputs) mean.Add(in.grad, in.samples);
  return Status::Ok();
}

}  // namespace p2p::sync::rules
