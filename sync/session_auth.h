// SessionAuthenticator: the Mailbox authenticator of a peer with an RSA identity.
//
// First it carries the join handshake (crypto/handshake.h): JOIN and WELCOME envelopes go to the
// handshake as they arrive (the handshake verifies their bodies itself; they carry no session
// MAC), and the handshake's replies are queued for JoinRun to send. Once a rank has proven its
// identity, every other envelope to or from it carries one 32-byte slot per receiver in the
// envelope's `sig` field (crypto/session_mac.h: HMAC-SHA-256 over the header and a Poly1305 tag
// of the body, under per-pair, per-direction session keys); a broadcast carries the slots of all
// receivers in rank order. An incoming envelope is accepted only if its slot verifies and its
// sequence number is above every earlier one accepted from that sender (transports deliver each
// sender's messages in order, so anything else is a replay or a duplicate). Rejection reasons:
// unsigned, unknown_sender, bad_mac, tampered_body, replay, plus the handshake's (untrusted_key,
// bad_signature, reused_nonce, replayed_handshake, rank_taken, ...).
//
// Thread-safety: one thread (the Mailbox's) uses it.
#pragma once

#include <functional>
#include <map>
#include <utility>
#include <vector>

#include "crypto/handshake.h"
#include "sync/mailbox.h"

namespace p2p::sync {

class SessionAuthenticator final : public Authenticator {
 public:
  SessionAuthenticator(crypto::JoinHandshake handshake, int rank, int size);

  Status Sign(broker::Envelope& env) override;
  Verdict Verify(const broker::Envelope& env) override;
  // As many 32-byte slots as fit in broker::kMaxSignatureBytes.
  int MaxBroadcastReceivers() const override;

  bool joined() const { return handshake_.complete(); }
  crypto::JoinHandshake& handshake() { return handshake_; }
  // Handshake replies produced by Verify, (receiver, envelope), for JoinRun (or, for a rejoining
  // rank, SendHandshakeReplies) to send.
  std::vector<std::pair<int, broker::Envelope>> TakeReplies();

  // Ranks that may run the handshake again with a fresh JOIN: a restarted peer outside the
  // current view (docs/membership.md, "Rejoining"). Its old session keys are dropped when its new
  // JOIN arrives, this rank's JOIN is sent to it again (it never saw the first one), and its
  // sequence numbers start over. A JOIN repeating the last one seen from that rank changes
  // nothing. Without this (the default) a proven rank's JOIN is refused as rank_taken.
  void set_rejoinable(std::function<bool(int)> rejoinable) { rejoinable_ = std::move(rejoinable); }

 private:
  Verdict OnHandshake(const broker::Envelope& env);
  // A JOIN from a rank that may rejoin: forgets its old session first (see set_rejoinable).
  void PrepareRejoin(const broker::Envelope& join);

  crypto::JoinHandshake handshake_;
  int rank_, size_;
  uint64_t last_signed_seq_ = 0;
  std::vector<uint64_t> last_seq_;  // per sender: the highest sequence number accepted
  std::vector<std::pair<int, broker::Envelope>> replies_;
  std::function<bool(int)> rejoinable_;
  std::map<int, broker::Bytes> last_join_;  // per rank: the body of the last JOIN answered
};

// Runs the join handshake through `mailbox`, whose authenticator must be `auth`: broadcasts this
// rank's JOIN, answers every JOIN, checks every PROOF, until every other rank has proven its
// identity. Timeout at the deadline naming the ranks that did not and why (what was refused).
// Messages of ranks that finished first (the start agreement) stay parked for later.
Status JoinRun(Mailbox& mailbox, SessionAuthenticator& auth, broker::Deadline deadline);

// Sends the handshake replies `auth` queued (to a rejoining rank, while this peer trains).
Status SendHandshakeReplies(Mailbox& mailbox, SessionAuthenticator& auth);

}  // namespace p2p::sync
