// allreduce-master (LambdaML's AllReduce pattern, REFERENCE.md Part A §7): one aggregator — the
// lowest rank of the current membership view — collects every peer's gradient, combines the W
// decoded gradients in rank order with the run's rule, and sends the result to all.
//
// Unlike LambdaML's fixed rank 0, the aggregator is chosen per view: when it dies the survivors
// agree on a new view (sync/membership/, docs/membership.md) and its lowest rank aggregates the
// redone round. LambdaML's replication also summed without dividing by W; here the aggregate is
// exactly the rule's output, so with the same codec and rule it is bit for bit what
// allgather-average computes.
//
// Codecs: every peer's gradient, the aggregator's own included, goes through the run's codec
// exactly as in allgather-average (the aggregator decodes the payload it would have sent), so
// error feedback and stochastic rounding see the same inputs as there. The aggregate travels as
// raw float32 (AGGREGATE, the "none" body), so every peer applies the aggregator's bits.
//
// Per peer and round a non-aggregator sends 1 gradient (P floats or its codec payload); the
// aggregator sends (W-1) x P floats and does all of the decoding and reducing.
#pragma once

#include <memory>
#include <vector>

#include "sync/codecs/codec.h"
#include "sync/rules/rule.h"
#include "sync/strategy.h"

namespace p2p::sync {

class AllreduceMaster final : public Strategy {
 public:
  // options.codec must be canonical and valid, options.rule valid (MakeStrategy checks them).
  AllreduceMaster(Mailbox& mailbox, StrategyOptions options);
  Status Average(Round round, uint32_t samples, std::span<float> grad) override;
  // The encoder's residual and velocity (each empty until used).
  std::vector<std::vector<float>> SaveState() const override;
  Status LoadState(std::vector<std::vector<float>> state) override;

 private:
  // The aggregator's part: every gradient of `round`, reduced into `grad`, sent to all.
  Status Aggregate(Round round, uint32_t samples, std::span<float> grad, broker::Deadline deadline);
  // The aggregate (over `total` samples) to every other member.
  Status SendAggregate(Round round, uint64_t total, std::span<const float> grad);
  // A non-aggregator's part: the aggregate of `round` from `master`, into `grad`.
  Status Receive(Round round, int master, std::span<float> grad, broker::Deadline deadline);

  Mailbox& mailbox_;
  StrategyOptions options_;
  codecs::GradientEncoder encoder_;
  std::unique_ptr<const rules::Rule> rule_;
  std::vector<int> others_;
  std::vector<float> mine_, theirs_;
  broker::Bytes sent_;  // our encoded gradient of the round in flight
};

}  // namespace p2p::sync
