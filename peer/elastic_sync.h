// ElasticSync: a peer's rounds (gradient exchange) and end-of-epoch exchanges, run under the
// membership protocol (sync/membership/elastic.h, docs/membership.md).
//
// A round that fails because a member died is recovered by a view change; then the round is
// redone with the survivors from this peer's own gradient (kept for that) and the strategy's
// codec state as it was before the round — or, when this peer had completed one round more than
// some survivor, the trainer rolls that round back and both are redone. Every survivor thus
// applies the same bits. Without membership (nullptr) a failed round ends the run.
//
// Thread-safety: the training thread only.
#pragma once

#include <functional>
#include <span>
#include <vector>

#include "common/status.h"
#include "peer/trainer.h"
#include "sync/epoch_summary.h"
#include "sync/mailbox.h"
#include "sync/membership/elastic.h"
#include "sync/strategy.h"

namespace p2p::peer {

class ElasticSync {
 public:
  // Judges a view installed after a failure before any round runs in it; an error ends the run.
  using ViewCheck = std::function<Status(const sync::membership::View&)>;
  // `membership` may be nullptr (--on-failure stop, or no failure detection). `check_view` may be
  // empty.
  ElasticSync(sync::Mailbox& mailbox, sync::Strategy& strategy,
              sync::membership::Membership* membership, broker::Clock::duration round_timeout,
              ViewCheck check_view = {});

  Result<RoundOutcome> Round(const StepInfo& info, std::span<float> grad);
  Result<RoundOutcome> EpochEnd(int epoch, sync::EpochTotals& totals);
  // The end agreement (final parameter hash), redone in a new view if a member dies during it.
  Status End(uint64_t epochs_done, const std::string& param_hash);

 private:
  // After a failed round: Ok(true) to redo the same round in the new view, Ok(false) when this
  // peer must first roll back its previous round.
  Result<bool> RecoverFrom(const Status& failure);

  sync::Mailbox& mailbox_;
  sync::Strategy& strategy_;
  sync::membership::Membership* membership_;
  broker::Clock::duration round_timeout_;
  ViewCheck check_view_;
  std::vector<float> local_;  // this peer's gradient of the round in flight
  // The strategy's codec state before the round in flight and before the previous round.
  std::vector<std::vector<float>> state_before_, state_before_previous_;
};

}  // namespace p2p::peer
