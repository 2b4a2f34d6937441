// AgreeOnNextView: the survivors of a view agree on the next one (docs/membership.md).
//
// Called by every member that suspects a failure (or that received a proposal for a next view),
// with the last *stable* view (the last one in which this peer completed a round, so every member
// provably took part) and the ranks it suspects. In outline:
//   1. C = stable members minus suspects (self always in). Without a strict majority of the
//      stable view in C, stop: "lost quorum: 2 of 4 ranks reachable (0, 1)".
//   2. The coordinator is min(C). Send VIEW_PROPOSE{base, last completed round, C} to every
//      rank of C; the envelope names the proposed id and the coordinator.
//   3. The coordinator takes the proposals that name it until every rank of C proposed or the
//      attempt timeout passes. Members = proposers that every proposer hears (so the new view is
//      a full mesh), and that share its base view. Without a strict majority of the stable view:
//      lost quorum. Otherwise it sends VIEW_INSTALL{base, resume_after, members} to every rank of
//      the stable view (the excluded learn they were evicted) and installs it.
//   4. A non-coordinator waits for a VIEW_INSTALL of its base view (from any coordinator: the
//      first one wins). If none arrives within two attempt timeouts, it adds the coordinator to
//      its suspects and starts again at 1 with the next coordinator.
// Safety does not rest on the install reaching everyone: a view only becomes stable when a
// round completes in it, which needs every member; so a peer that missed an install (or installed
// a competing one) blocks that view from ever stabilising, and the next change is again judged
// against the old stable view.
//
// Thread-safety: uses the Mailbox from the calling thread only.
#pragma once

#include <chrono>
#include <cstdint>
#include <vector>

#include "common/status.h"
#include "sync/mailbox.h"
#include "sync/membership/view.h"

namespace p2p::sync::membership {

struct ViewChangeOptions {
  // How long a coordinator collects proposals; a member waits twice this for the install.
  std::chrono::milliseconds attempt_timeout{std::chrono::seconds(3)};
};

struct ViewChangeInput {
  View stable;                // the last stable view
  uint64_t next_id = 0;       // > every view id this peer installed or proposed before
  std::vector<int> suspects;  // sorted; members of `stable` this peer believes dead
  Round last_round;           // the last round this peer completed and applied
};

struct ViewChangeOutcome {
  View view;            // installed, this peer among its members
  Round resume_after;   // the last round every member completed (this peer may be one ahead)
  int coordinator = 0;  // who decided
  int attempts = 1;     // coordinators tried
};

// Unavailable "lost quorum: ..." when this side cannot reach a strict majority of the stable
// view; Unavailable "evicted from view N ..." when a coordinator installed a view without this
// peer; a transport failure as its Status. Never returns a view without this peer in it.
Result<ViewChangeOutcome> AgreeOnNextView(Mailbox& mailbox, const ViewChangeInput& input,
                                          const ViewChangeOptions& options = {});

}  // namespace p2p::sync::membership
