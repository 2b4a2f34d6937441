// mlless (MLLess's significance filter, REFERENCE.md Part A §5; docs/strategies.md): every peer
// adds its gradient of the round into a local accumulator and publishes only the coordinates
// whose accumulated value is significant, MLLess's per-parameter rule on the relative change
//     |lr * acc[f]| > v / sqrt(k + 1) * |w[f]|      (i.e. |lr * acc[f] / w[f]| > v / sqrt(k + 1))
// where w is the parameter vector at the start of the round, lr options.learning_rate (the run's
// --lr: lr * acc is the change plain SGD would make; 1 when not given), k the number of rounds
// this strategy has run and v the run's --significance. Published coordinates are reset to 0 in the
// accumulator; the others keep accumulating until they pass. With v = 0 every non-zero
// coordinate is published every round.
//
// Every member sends exactly one update per round (possibly empty: 13 bytes), so every peer
// knows which updates to expect without MLLess's supervisor round trip (its I and C messages
// carry the same information). Every peer sums the W published updates in rank order and divides
// by the number of members that had samples this round: the same inputs in the same order, so
// every peer applies bitwise the same update (MLLess's own aggregation: the sum of the updates
// received divided by their count). The update then goes through the run's optimizer.
//
// The accumulator and the round count are the strategy's state: a checkpoint carries them and a
// redone round (a view change) restores them.
#pragma once

#include <cstdint>
#include <map>
#include <string_view>
#include <vector>

#include "sync/mlless_body.h"
#include "sync/strategy.h"

namespace p2p::sync {

class Mlless final : public Strategy {
 public:
  // options.significance must be finite and >= 0 (MakeStrategy checks); options.parameters must
  // be set before the first round.
  Mlless(Mailbox& mailbox, StrategyOptions options);
  Status Average(Round round, uint32_t samples, std::span<float> grad) override;
  // The accumulator and the round count (nothing before the first round).
  std::vector<std::vector<float>> SaveState() const override;
  Status LoadState(std::vector<std::vector<float>> state) override;
  // Coordinates this peer published, summed over rounds (bytes are in timings()).
  uint64_t published() const { return published_; }

 private:
  // Adds `grad` to the accumulator and takes out the significant coordinates.
  Result<MllessUpdate> Select(uint32_t samples, std::span<const float> grad);
  // The rank-order sum of every member's update over the members that had samples.
  Status Combine(Round round, const MllessUpdate& mine, std::map<int, broker::Envelope>& received,
                 std::span<float> grad);

  Mailbox& mailbox_;
  StrategyOptions options_;
  std::vector<float> acc_;
  uint64_t rounds_ = 0;
  uint64_t published_ = 0;
  std::vector<int> others_;
};

// Whether `v` is a valid --significance; InvalidArgument saying what is allowed.
Status CheckSignificance(double v);
// Whether mlless can run with this significance, codec (a spec, sync/codecs/codec.h) and
// --aggregation rule name: no codec (it sends its own sparse values) and the mean only.
Status CheckMlless(double significance, const codecs::CodecConfig& codec,
                   std::string_view rule_name);

}  // namespace p2p::sync
