// Sharded reduction with M aggregators among the W members of the current view: SMLT's
// hierarchical shard aggregators (`hierarchical:shards=M`) and FasDL's K-Reduce (`k-reduce:k=K`).
// With M = W it is LambdaML's ScatterReduce (our reduce-scatter-average), with M = 1 LambdaML's
// AllReduce over raw floats (allreduce-master is that pattern with codecs and whole-gradient
// rules). Shard j is [P*j/M, P*(j+1)/M) (M need not divide P) and its aggregator is member
// floor(j*W/M) of the view in rank order — M distinct members spread evenly, member 0 first.
//   1. every peer sends shard j of its gradient, with its sample count, to aggregator j (GRADIENT,
//      point to point; an aggregator keeps its own shard);
//   2. aggregator j combines shard j of all W gradients in rank order with the run's rule, which
//      must be coordinatewise (so each value is computed exactly as allgather-average computes
//      it), and sends the result to every other member (AGGREGATE);
//   3. every peer assembles the M averaged shards.
// Per round a non-aggregator sends (M-1)/M x P floats or P (when it aggregates none); an
// aggregator also sends (W-1)/M x P. M trades the aggregators' load against the number of
// messages. When a view change leaves fewer than M members, every member aggregates one shard.
//
// Shards travel as raw float32 ("none"): a lossy codec would have to re-encode the averaged
// shards, so compressed runs use allgather-average or allreduce-master (MakeStrategy refuses).
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "sync/rules/rule.h"
#include "sync/strategy.h"

namespace p2p::sync {

class ShardedReduce final : public Strategy {
 public:
  // `shards` >= 1; `name` is the --strategy spec, for messages. options.rule must be valid and
  // coordinatewise (MakeStrategy checks).
  ShardedReduce(Mailbox& mailbox, StrategyOptions options, int shards, std::string name);
  Status Average(Round round, uint32_t samples, std::span<float> grad) override;

 private:
  struct Shard {
    int aggregator = 0;
    size_t begin = 0, len = 0;
  };
  // The shards of a P-float gradient among `members`.
  std::vector<Shard> Layout(const std::vector<int>& members, size_t p) const;
  // Aggregator's part: shard `s` of every member's gradient, combined into `out`; the total of
  // the sample counts.
  Result<uint64_t> ReduceShard(Round round, const Shard& s, uint32_t samples,
                               std::span<const float> grad, broker::Deadline deadline);

  Mailbox& mailbox_;
  StrategyOptions options_;
  int shards_;
  std::string name_;
  std::unique_ptr<const rules::Rule> rule_;
  std::vector<int> others_;
  std::vector<float> theirs_, averaged_;
};

// The parametrised names: `hierarchical:shards=M` and `k-reduce:k=K` give M (K); nullopt for any
// other name; InvalidArgument for one of these names with a missing or bad count.
Result<std::optional<int>> ParseShardedStrategy(const std::string& name);

}  // namespace p2p::sync
