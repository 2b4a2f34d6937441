// reduce-scatter-average: the average allgather-average computes — the same bits — with a
// fraction of the bytes. Rank r owns slice r of the gradient, [P*r/W, P*(r+1)/W).
//   1. reduce-scatter: each peer sends slice j of its gradient, with its sample count, only to
//      rank j (GRADIENT, point to point);
//   2. each owner combines its slice of all W gradients in rank order with the run's rule, which
//      must be coordinatewise (the sample-weighted mean is), so every value is computed by the
//      same operations in the same order as allgather-average's, and broadcasts the result
//      (AGGREGATE);
//   3. allgather: every peer assembles the W averaged slices.
// Per peer and round that is 2(W-1)/W x P floats sent instead of (W-1) x P: 1.5 P instead of
// 3 P at W = 4, and the reduce work is split W ways. Two message delays instead of one, so it
// pays for large gradients (bench/sync_round_bench: the "xport_rsag" rows bound it).
//
// Slices travel as raw float32 (the "none" codec); with a lossy codec MakeStrategy builds
// ReduceScatterCodec (sync/reduce_scatter_codec.h), which encodes the slices and re-encodes the
// averaged ones.
#pragma once

#include <memory>
#include <vector>

#include "sync/rules/rule.h"
#include "sync/strategy.h"

namespace p2p::sync {

class ReduceScatterAverage final : public Strategy {
 public:
  ReduceScatterAverage(Mailbox& mailbox, StrategyOptions options);
  Status Average(Round round, uint32_t samples, std::span<float> grad) override;

 private:
  Mailbox& mailbox_;
  StrategyOptions options_;
  std::unique_ptr<const rules::Rule> rule_;  // coordinatewise (MakeStrategy checks)
  std::vector<int> others_;
  std::vector<float> theirs_, averaged_;
};

}  // namespace p2p::sync
