// Membership: what a peer does when a round cannot complete because members died.
//
// The peer runs each round (a gradient exchange, an epoch's totals) under the Mailbox's current
// view and reports the outcome here. A round that failed because members are suspected (or
// because another member started a view change) is recovered by agreeing on the next view
// (AgreeOnNextView) and installing it; the caller then redoes the round with the survivors.
// Rounds completed here are what the quorum is judged against (the stable view) and what a
// proposal reports as "last round", so that the survivors resume from the last round all of them
// completed — a peer one round ahead rolls that round back first (docs/membership.md).
//
// Thread-safety: the training thread only.
#pragma once

#include <chrono>
#include <cstdint>
#include <limits>
#include <vector>

#include "common/status.h"
#include "sync/mailbox.h"
#include "sync/membership/view.h"
#include "sync/membership/view_change.h"

namespace p2p::sync::membership {

// The step a completed end-of-epoch exchange is recorded as: after every round of its epoch.
inline constexpr uint64_t kEpochEndStep = std::numeric_limits<uint64_t>::max();

struct MembershipOptions {
  // false (--on-failure stop): a failed round ends the run, as without membership.
  bool continue_on_failure = true;
  ViewChangeOptions view_change{};
};

// One view change, for logs and metrics.
struct ViewChangeRecord {
  uint64_t view = 0;
  std::vector<int> members, evicted, joined;
  Round resume_after;
  double recovery_seconds = 0;  // from the start of the recovery to the install
};

class Membership {
 public:
  Membership(Mailbox& mailbox, MembershipOptions options);

  // A round (or an end-of-epoch exchange, step kEpochEndStep) completed in the current view.
  void Completed(Round round);
  // After a round failed with `failure`: the failure itself when no member is suspected and no
  // view change is under way, or with --on-failure stop; the view change's error (lost quorum,
  // evicted) when it fails. Otherwise the next view is installed and the result is the last
  // round every member of it completed: redo what comes after it.
  Result<Round> Recover(const Status& failure);

  // Installs `view`, the current view plus restarted ranks that every member agreed to admit at
  // the end of an epoch (peer/elastic_join.h); it becomes the stable view at once (every member
  // installs it after the same completed exchange) and is recorded with its `joined` ranks.
  void Admit(View view);

  const Round& completed() const { return completed_; }
  const View& stable() const { return stable_; }
  // View changes since the last call (for the epoch's metrics record).
  std::vector<ViewChangeRecord> TakeChanges();

 private:
  Mailbox& mailbox_;
  MembershipOptions options_;
  View stable_;
  Round completed_;
  uint64_t next_id_ = 1;
  std::vector<ViewChangeRecord> changes_;
};

}  // namespace p2p::sync::membership
