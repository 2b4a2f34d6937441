// Mailbox: the envelope layer between a Transport and the sync strategies.
//
// Every outgoing envelope gets the run id, this rank as sender and the next sequence number.
// Every incoming message is decoded as untrusted input and then either delivered to a waiting
// Collect, parked for a later round (a fast peer may already be one round ahead), or dropped and
// counted by reason: malformed, wrong run, stale (a round already completed), duplicate, unexpected
// sender, out of window (too far ahead to be honest), over the sender's parking quota. Nothing is
// applied that was not asked for.
//
// With an Authenticator (the default for peers; sync/session_auth.h) every outgoing envelope is
// signed and every incoming one must pass Verify before it can be parked: rejected ones (unsigned,
// bad MAC, tampered body, replay, ...) are counted by the authenticator's reason like the others.
// Each reason is logged once per claimed sender; further drops are only counted. Without one
// (--insecure) envelopes are neither signed nor checked.
//
// Membership: the Mailbox knows the current view (sync/membership/view.h). A message from a rank
// outside it is dropped ("evicted_sender"), a view-scoped message (a gradient, an epoch's totals)
// of an earlier view is stale, and Send(kAllRanks) reaches the view's members only. Every admitted
// message is a sign of life for the FailureDetector; HEARTBEATs are nothing else.
//
// Recovery between live members (with failure detection): a frame lost on the way (a ZeroMQ
// connection dropped and re-made, say) must not stall a round for good while its sender keeps
// heartbeating. So the Mailbox keeps the last two view-scoped envelopes it sent per type and
// destination, and Collect asks a live member whose message is still missing after
// resend_after() to send it again (RESEND, naming the round and the highest seq it has received
// from that member). The member re-signs and re-sends it only when that seq shows the original
// went out before something that did arrive (channels are FIFO), so a merely slow peer is not
// made to send twice. Likewise a member still in an earlier view (its heartbeats say so) long
// after this peer installed the current one missed the VIEW_INSTALL: it is sent again.
//
// Thread-safety: one thread receives and collects. Send may also be called from one other thread
// (the heartbeat sender, sync/membership/heartbeat.h): sends are serialised under a lock, which
// every Transport allows once connected (broker/transport.h).
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <limits>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "broker/envelope.h"
#include "broker/transport.h"
#include "common/status.h"
#include "sync/membership/failure_detector.h"
#include "sync/membership/view.h"

namespace p2p::sync {

// One round of a message type. `view` is the membership view it belongs to (sync/membership/):
// a round redone after a view change is a new round, and every round of a later view comes after
// every round of an earlier one.
struct Round {
  uint64_t epoch = 0;
  uint64_t step = 0;
  uint64_t view = 0;
  auto operator<=>(const Round& o) const {
    return std::tie(view, epoch, step) <=> std::tie(o.view, o.epoch, o.step);
  }
  bool operator==(const Round&) const = default;
};

// Why messages were dropped; machine-readable names for metrics.
struct RejectCounts {
  std::map<std::string, uint64_t> by_reason;
  uint64_t total() const;
};

// Signs what a Mailbox sends and judges what it receives.
class Authenticator {
 public:
  enum class Action {
    kAccept,    // authentic and fresh: the Mailbox may park it
    kConsumed,  // handled by the authenticator itself (the join handshake): not parked
    kReject,    // dropped and counted under `reason`
  };
  struct Verdict {
    Action action = Action::kAccept;
    std::string reason;  // kReject: metric name, e.g. "bad_mac"
    std::string detail;  // kReject: one sentence for the log; never key material
  };
  virtual ~Authenticator() = default;
  // Sets env.signature; every other field of `env` is final (run id, sender, receiver, seq).
  virtual Status Sign(broker::Envelope& env) = 0;
  // Judges an envelope of this run from another member of it, addressed to this rank or to all.
  virtual Verdict Verify(const broker::Envelope& env) = 0;
  // How many receivers one broadcast envelope can be authenticated for; a Mailbox in a larger
  // run sends one copy per rank instead of broadcasting.
  virtual int MaxBroadcastReceivers() const { return std::numeric_limits<int>::max(); }
};

class Mailbox {
 public:
  struct Options {
    std::string run_id;
    // Rounds further ahead than this (per message type) are rejected instead of parked, which
    // bounds the memory a misbehaving peer can make us hold.
    uint64_t max_rounds_ahead = 4;
    // Envelopes parked per sender at once; more are rejected ("sender_quota"). The window above
    // only bounds rounds of an epoch already under way, so without this a sender (or anyone
    // claiming its rank without authentication) could park messages for unbounded future rounds
    // and epochs. An honest peer parks a few: up to max_rounds_ahead rounds of one or two types.
    size_t max_parked_per_sender = 64;
    // Not owned; must outlive the Mailbox. nullptr: no authentication (--insecure).
    Authenticator* authenticator = nullptr;
  };
  Mailbox(broker::Transport& transport, Options options);

  int rank() const { return transport_.rank(); }
  int size() const { return transport_.size(); }

  // Fills run id, sender, view and sequence number, signs (with an authenticator), then sends to
  // `to` (or every other member of the view when kAllRanks). A member the transport cannot
  // reach (Unavailable) is reported gone to the failure detector and skipped: a broadcast still
  // reaches the others, and the caller learns of the failure from Suspects().
  Status Send(broker::Envelope env, int to = broker::kAllRanks);

  // The current view: its members (ascending, this rank among them) and id. Starts as view 0
  // with every rank of the run.
  const membership::View& view() const { return view_; }
  // Installs `view` (an id above the current one): later messages from non-members are
  // rejected, view-scoped ones of earlier views are stale, and the failure detector watches
  // exactly the new members.
  void InstallView(membership::View view);
  // From now on a member silent for `suspect_after` (or unreachable) is suspected, and Collect
  // stops waiting for it. Called once the peers are known to be up (after the start agreement),
  // with heartbeats flowing (sync/membership/heartbeat.h). Without it Collect waits for its
  // deadline only.
  void StartFailureDetection(std::chrono::milliseconds suspect_after);
  // Members of the current view this peer suspects (silent for suspect_after, or unreachable);
  // ascending. Empty without failure detection.
  std::vector<int> Suspects();
  // Marks `ranks` suspected now (e.g. a round that waited far too long for them).
  void Suspect(const std::vector<int>& ranks);
  // Whether another member proposed or installed a view after the current one (the proposal is
  // parked for sync/membership/view_change.h to take). Collect stops waiting when one arrives.
  bool ViewChangePending() const;

  // Receives one message if one arrives before the deadline and files it (to the authenticator,
  // parked, or rejected). Timeout when nothing arrived. For protocols that react to every message
  // as it comes (the join handshake) instead of collecting one round.
  Status Pump(broker::Deadline deadline);

  // Blocks until an envelope of `type` for `round` arrived from every rank in `from`, or the
  // deadline passes (Timeout naming the missing ranks, with `what` describing the wait), or —
  // with failure detection — a rank it waits for is suspected (Unavailable naming it; Suspects()
  // then says who). Marks the round complete for `type`, so late copies are dropped as stale —
  // unless `complete_round` is false: a caller that takes a round in two parts (an omniscient
  // attacker reads the honest gradients before it sends its own) completes it with the second.
  // Returns envelopes by sender.
  Result<std::map<int, broker::Envelope>> Collect(broker::MessageType type, Round round,
                                                  const std::vector<int>& from,
                                                  broker::Deadline deadline,
                                                  const std::string& what,
                                                  bool complete_round = true);

  // The VIEW_INSTALL envelope that made the current view (sent by the coordinator, or adopted);
  // sent again to members that missed it (see above). Called by the view change.
  void RememberInstall(const broker::Envelope& install);
  // How long Collect waits for a live member's message before asking it again.
  std::chrono::milliseconds resend_after() const;
  struct RecoveryCounts {
    uint64_t resend_requests = 0;     // RESENDs this peer sent
    uint64_t resent = 0;              // messages this peer sent again when asked
    uint64_t installs_forwarded = 0;  // VIEW_INSTALLs sent again to members that missed them
  };
  RecoveryCounts recovery() const;

  // Removes and returns the first parked envelope of `type` (in round, then sender order) that
  // `match` accepts; nullopt if none. For protocols that take whatever arrived instead of one
  // envelope from every rank (the view change, sync/membership/view_change.h).
  std::optional<broker::Envelope> TakeParked(
      broker::MessageType type, const std::function<bool(const broker::Envelope&)>& match);
  // Marks every round of `type` up to `round` complete, as a Collect does: parked envelopes of
  // those rounds are dropped and later ones are rejected as stale.
  void CompleteRounds(broker::MessageType type, Round round);

  const RejectCounts& rejects() const { return rejects_; }
  // Drops by (reason, claimed sender rank, or the transport's rank for undecodable messages).
  const std::map<std::pair<std::string, int>, uint64_t>& rejects_by_source() const {
    return by_source_;
  }
  // Logs one warning per (reason, source) with its count: the totals behind the one line each
  // reason logged when it first happened. Nothing when nothing was dropped.
  void LogRejectSummary() const;
  // Envelopes held for rounds not collected yet (bounded by max_parked_per_sender per sender).
  size_t parked() const { return parked_.size(); }
  broker::Transport& transport() { return transport_; }

 private:
  using Key = std::tuple<broker::MessageType, Round, int>;  // type, round, sender
  // A view-scoped envelope as last sent to `to` (or kAllRanks), kept for RESEND.
  struct Sent {
    broker::Envelope env;       // signed; env.seq is the highest seq any copy of it went out with
    std::map<int, int> resent;  // times sent again, per asking rank
  };
  static constexpr size_t kSentKept = 2;  // per type and destination: a peer is <= 1 round ahead
  static constexpr int kMaxResends = 3;   // per asking rank and message
  Status SendLocked(broker::Envelope& env, int to);
  void Keep(broker::Envelope env, int to);
  void AnswerResend(const broker::Envelope& request);
  void AskResend(broker::MessageType type, Round round, const std::vector<int>& ranks);
  void CatchUp(int sender);
  Status ReceiveOne(broker::Deadline deadline);
  // Whether an envelope that passed the envelope-level checks may be parked (authentication).
  bool Admit(const broker::Envelope& env);
  void Park(broker::Envelope env);
  Status SignAndSend(broker::Envelope& env, int receiver, int to);
  Status SendBytes(int to, std::span<const std::byte> bytes);
  bool WatchingLiveness();
  // Whether `env` is no longer acceptable under the current view (and was rejected).
  bool RejectedByView(const broker::Envelope& env);
  void Heard(int rank);
  // Counts a drop; logs it once per (reason, claimed sender).
  void Reject(const std::string& reason, const std::string& detail, int sender);

  broker::Transport& transport_;
  Options options_;
  uint64_t next_seq_ = 1;
  std::map<Key, broker::Envelope> parked_;
  std::map<broker::MessageType, Round> completed_;  // highest completed round per type
  RejectCounts rejects_;
  std::map<std::pair<std::string, int>, uint64_t> by_source_;  // (reason, claimed sender)
  membership::View view_;
  std::mutex send_mu_;  // next_seq_, signing, transport sends, and view_ while sending
  std::mutex liveness_mu_;
  std::optional<membership::FailureDetector> detector_;  // under liveness_mu_
  std::chrono::milliseconds suspect_after_{0};
  // Recovery (see the class comment). sent_ under send_mu_; the rest on the receiving thread.
  std::map<std::pair<broker::MessageType, int>, std::deque<Sent>> sent_;
  std::map<int, uint64_t> last_seq_from_;  // highest seq admitted per sender
  std::optional<broker::Envelope> install_;
  broker::Clock::time_point view_installed_at_{};
  std::map<int, broker::Clock::time_point> install_forwarded_at_;
  RecoveryCounts recovery_;
};

// Whether messages of `type` belong to one view (gradients, aggregates, an epoch's totals): those
// of an earlier view are stale once a later one is installed. Handshake, heartbeat and view-change
// messages are not.
bool ViewScoped(broker::MessageType type);

}  // namespace p2p::sync
