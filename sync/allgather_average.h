// allgather-average (the P2P study's scheme, without its races): every peer broadcasts its
// gradient, receives every other peer's for the same round, and combines all W in rank order with
// the run's rule (sync/rules/: the sample-weighted mean by default). The inputs and their order
// are identical everywhere, so every peer computes the same bits.
//
// With a lossy codec every peer averages the DECODED gradients, its own included: it decodes the
// payload it sent exactly as the others do, so the W inputs of the sum are the same bits on every
// peer. A gradient whose envelope names another codec or other parameters than the run's is
// refused (the round fails naming the sender).
#pragma once

#include <map>
#include <memory>
#include <vector>

#include "sync/codecs/codec.h"
#include "sync/rules/rule.h"
#include "sync/strategy.h"

namespace p2p::sync {

class AllgatherAverage final : public Strategy {
 public:
  // options.codec and options.rule must be valid (MakeStrategy checks them; an invalid one here
  // is a P2P_CHECK).
  AllgatherAverage(Mailbox& mailbox, StrategyOptions options);
  Status Average(Round round, uint32_t samples, std::span<float> grad) override;
  const codecs::Codec& codec() const { return encoder_.codec(); }
  // The encoder's residual and velocity (each empty until used).
  std::vector<std::vector<float>> SaveState() const override;
  Status LoadState(std::vector<std::vector<float>> state) override;

 private:
  // Checks that `e` from rank `r` carries the run's codec and decodes it into `out`; its sample
  // count.
  Result<uint32_t> Decode(const broker::Envelope& e, int r, std::span<float> out) const;
  // options_.omniscient_attack: waits for the honest members' gradients of `round`, lets the
  // attack overwrite `grad` from them, and returns them for the reduce (the round stays open for
  // the other attackers' gradients).
  Result<std::map<int, broker::Envelope>> ReadHonestFirst(Round round, std::span<float> grad);

  Mailbox& mailbox_;
  StrategyOptions options_;
  codecs::GradientEncoder encoder_;
  std::unique_ptr<const rules::Rule> rule_;
  std::vector<int> others_;
  std::vector<float> mine_, theirs_;
  broker::Bytes sent_;  // our last body, decoded again in the reduce phase (lossy codecs)
};

}  // namespace p2p::sync
