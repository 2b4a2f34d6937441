// allgather-average (the P2P study's scheme, without its races): every peer broadcasts its
// gradient, receives every other peer's for the same round, and averages all W in rank order.
// Summation order and weights are identical everywhere, so every peer computes the same bits.
#pragma once

#include <vector>

#include "sync/strategy.h"

namespace p2p::sync {

class AllgatherAverage final : public Strategy {
 public:
  AllgatherAverage(Mailbox& mailbox, StrategyOptions options);
  Status Average(Round round, uint32_t samples, std::span<float> grad) override;

 private:
  Mailbox& mailbox_;
  StrategyOptions options_;
  std::vector<int> others_;
  std::vector<float> mine_, theirs_;
};

}  // namespace p2p::sync
