// Bounded staleness (stale-synchronous parallel, `--staleness S`; docs/strategies.md) for
// allgather-average: in round r a peer sends its gradient of round r to all, and then applies the
// combination of round r-S's gradients — all W of them, combined exactly as allgather-average
// combines a round (decoded, the run's rule, rank order). A peer therefore needs round r-S's
// gradients, not round r's, before it computes round r+1: it may run up to S rounds ahead of the
// slowest peer while their gradients are in flight, and every peer still applies bitwise the same
// update in every round.
//
// The update applied in round r is S rounds stale: it was computed on the parameters of round
// r-S. The first S rounds of a run apply a zero gradient (there is nothing S rounds old yet; the
// optimizer still runs, so weight decay acts), and the gradients of the last S rounds of the run
// are sent but never applied. Rounds carry on across epoch ends (round r-S may be in the previous
// epoch). S = 0 is allgather-average itself.
//
// Not kept across a checkpoint: the gradients in flight are the other peers', so a resumed run
// starts with an empty pipeline (every peer alike: the peers stay identical, but the run is not
// bit-exact with an uninterrupted one). No view changes: a peer that dies stops the run.
#pragma once

#include <algorithm>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "sync/codecs/codec.h"
#include "sync/rules/rule.h"
#include "sync/strategy.h"

namespace p2p::sync {

inline constexpr int kMaxStaleness = 2;
// The mailbox window (Mailbox::Options::max_rounds_ahead) --staleness S needs: while a peer has
// collected round r-S-1 and not yet r-S, another one may have completed round r+S (it needs only
// our round r) and send round r+S+1: 2S+2 ahead.
inline constexpr uint64_t MaxRoundsAheadFor(int staleness) {
  return staleness > 0 ? std::max<uint64_t>(4, 2 * static_cast<uint64_t>(staleness) + 2) : 4;
}

class StaleAllgather final : public Strategy {
 public:
  // options.codec canonical and valid, options.rule valid, 1 <= options.staleness <=
  // kMaxStaleness (MakeStrategy checks them).
  StaleAllgather(Mailbox& mailbox, StrategyOptions options);
  Status Average(Round round, uint32_t samples, std::span<float> grad) override;
  // Rounds that applied a combined update and rounds that applied zero (the first S).
  uint64_t applied() const { return applied_; }
  uint64_t warmup() const { return warmup_; }

 private:
  // Our gradient of `round`, encoded, sent to all, and kept decoded for the round S later.
  Status SendOwn(Round round, uint32_t samples, std::span<const float> grad);
  // The combination of the oldest round in flight into `grad`.
  Status CombineOldest(std::span<float> grad);

  struct InFlight {
    Round round;
    uint32_t samples = 0;
    std::vector<float> decoded;  // our gradient as every peer decodes it
  };
  Mailbox& mailbox_;
  StrategyOptions options_;
  codecs::GradientEncoder encoder_;
  std::unique_ptr<const rules::Rule> rule_;
  std::deque<InFlight> in_flight_;
  broker::Bytes sent_;
  std::vector<float> theirs_;
  uint64_t applied_ = 0, warmup_ = 0;
};

// Whether --staleness `s` can run with --strategy `name`; InvalidArgument saying what can.
Status CheckStaleness(const std::string& name, int s);
// --staleness S with --strategy `name`: nullopt for S = 0 (the strategy as usual), else the
// stale strategy or InvalidArgument (S out of range, a strategy other than allgather-average).
std::optional<Result<std::unique_ptr<Strategy>>> MakeStaleStrategy(const std::string& name,
                                                                   Mailbox& mailbox,
                                                                   const StrategyOptions& options);

}  // namespace p2p::sync
