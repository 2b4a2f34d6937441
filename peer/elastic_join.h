// Rejoining a running run: a restarted rank (`p2ptrain peer --join`, which `launch --max-restarts`
// runs) asks the members to take it back, and they admit it at the end of an epoch with the
// run's state (protocol: docs/membership.md, "Rejoining").
//
// The joiner: handshake with every other rank again (its JOIN re-sent every second until each
// member, having evicted its old incarnation, answers), then a JOIN_REQUEST to each. It waits for
// a STATE (a checkpoint in memory: parameters, optimizer, LR plateau, early stopping, codec state,
// the epoch, steps per epoch and the new view) from one member and a PARAMS_HASH from every member
// of the new view; the state is used only if its parameters hash to what every member reports.
//
// The members: each holds the JOIN_REQUESTs it received and sends them with its end-of-epoch
// totals; the union (every member computes the same one) is admitted after that epoch: every
// member installs the view with the joiners, sends each its PARAMS_HASH, and the lowest member
// of the previous view sends the STATE. Everything travels as authenticated envelopes (session
// MACs after the handshake), so the state is signed by a current member.
//
// Thread-safety: the training thread only.
#pragma once

#include <chrono>
#include <cstdint>
#include <set>
#include <vector>

#include "common/status.h"
#include "peer/peer_options.h"
#include "peer/trainer.h"
#include "sync/mailbox.h"
#include "sync/membership/elastic.h"
#include "sync/session_auth.h"

namespace p2p::peer {

// InvalidArgument unless --join can work with these flags: heartbeats and --on-failure continue
// (the members admit joiners only then), --transport zmq with --peers (a rendezvous or RabbitMQ
// rejoin is not implemented), not --strategy spirt.
Status CheckJoinFlags(const PeerOptions& options);

// A member's side.
class JoinDesk {
 public:
  // `auth` may be nullptr (--insecure). `handshake_timeout` bounds the wait, at admission, for a
  // joiner's handshake with this member to finish.
  JoinDesk(sync::Mailbox& mailbox, sync::SessionAuthenticator* auth, Trainer& trainer,
           sync::membership::Membership& membership, int64_t steps_per_epoch,
           std::chrono::milliseconds handshake_timeout);

  // Sends the handshake replies queued for rejoining ranks and takes their requests. Cheap: call
  // it every round.
  Status Poll();
  // The ranks outside the view that asked to rejoin (ascending): this member's part of the
  // end-of-epoch totals (sync::EpochTotals::joiners).
  std::vector<int> Requests();
  // After epoch `epoch`, with `joiners` the union every member computed: admits them (a new view)
  // and sends each the state. Nothing without joiners.
  Status Admit(int epoch, const std::vector<int>& joiners);

 private:
  Status WaitForHandshake(int joiner);

  sync::Mailbox& mailbox_;
  sync::SessionAuthenticator* auth_;
  Trainer& trainer_;
  sync::membership::Membership& membership_;
  int64_t steps_per_epoch_;
  std::chrono::milliseconds handshake_timeout_;
  std::set<int> requests_;
};

// What the joiner learned from its admission.
struct Admission {
  int epoch = 0;  // the last epoch the members completed; training continues after it
  int64_t steps_per_epoch = 0;
  int from = -1;  // the member that sent the state
};

// The joiner's side, after Connect: handshake, request, state transfer, install the view.
// `handshake_deadline` bounds the handshake; `admission_deadline` the wait for the state.
// Errors: Timeout naming the ranks that did not answer; DataLoss when the state fails its hash
// check (refused: nothing of it is used) or is malformed; InvalidArgument when it was written by
// another configuration.
Result<Admission> Rejoin(sync::Mailbox& mailbox, sync::SessionAuthenticator* auth, Trainer& trainer,
                         broker::Deadline handshake_deadline, broker::Deadline admission_deadline);

}  // namespace p2p::peer
