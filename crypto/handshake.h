// JoinHandshake: the mutual challenge-response by which the peers of a run prove their
// identities to each other and agree on per-pair session keys. A pure state machine over byte
// bodies: the caller moves them (sync/session_auth.h carries them in JOIN and WELCOME envelopes).
//
// Protocol (every rank runs it with every other rank at once; spec in docs/security.md):
//   1. Each rank r broadcasts JOIN_r = {run, size, r, its public key, a fresh 32-byte nonce N_r}.
//   2. On JOIN_s, rank r checks s's key against the trust store (and the manifest's rank binding),
//      draws a 32-byte key share k_rs, and answers s alone with PROOF_rs = {run, size, r, s, its
//      public key, N_r, N_s, OAEP(pk_s, k_rs), RSA-PSS_r(transcript)}, the transcript binding the
//      run, the size, both ranks, both key fingerprints, both nonces and the encrypted share.
//   3. On PROOF_sr, rank r checks that it answers r's own nonce of this run (else a replay), that
//      it comes from a JOIN r answered with the same key, the signature, then decrypts k_sr.
//      Rank s is then proven, and both sides derive the same directional keys from
//      HKDF-SHA-256(k_lo || k_hi, salt = N_lo || N_hi, info = run, ranks, fingerprints).
// A rank's JOIN or PROOF is refused (counted, logged by the caller, and answered with a REFUSAL
// where the claimed sender should learn why) for: a key not in the trust store, a key the
// manifest binds to another rank, a bad signature, a reused nonce, a proof for a stale nonce
// (replayed handshake), a rank already taken, a key already used by another rank. Refusals never
// end the handshake: an attacker's message must not be able to stop the run, so the handshake
// waits for a valid proof until the caller's deadline, then reports what was refused.
//
// Thread-safety: one thread uses a JoinHandshake.
#pragma once

#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/status.h"
#include "crypto/keys.h"
#include "crypto/session_mac.h"
#include "crypto/trust_store.h"

namespace p2p::crypto {

struct JoinConfig {
  std::string run_id;
  int size = 0;
  int rank = 0;
  const PrivateKey* key = nullptr;    // not owned; outlives the handshake
  const TrustStore* trust = nullptr;  // not owned; outlives the handshake
};

// Why a handshake message was not accepted: `reason` is a metric name ("untrusted_key"),
// `detail` a sentence for the log (fingerprints and ranks only, never secrets).
struct Refusal {
  std::string reason;
  std::string detail;
};

class JoinHandshake {
 public:
  // Draws this rank's nonce. InvalidArgument for an inconsistent config.
  static Result<JoinHandshake> Create(JoinConfig config);
  JoinHandshake(JoinHandshake&&) noexcept = default;
  JoinHandshake& operator=(JoinHandshake&&) noexcept = default;
  JoinHandshake(const JoinHandshake&) = delete;  // holds session keys: one owner
  JoinHandshake& operator=(const JoinHandshake&) = delete;

  // The JOIN body to broadcast once.
  Bytes JoinMessage() const;

  // What handling one incoming message produced: a refusal to count and log, and/or a reply to
  // send to the message's claimed sender (a PROOF, or a REFUSAL telling it why).
  struct Step {
    std::optional<Refusal> refusal;
    std::optional<Bytes> reply;
  };
  // A JOIN whose envelope claims sender `from`.
  Step OnJoin(int from, ByteSpan body);
  // A PROOF or REFUSAL (both travel as WELCOME) whose envelope claims sender `from`.
  Step OnWelcome(int from, ByteSpan body);

  bool complete() const { return static_cast<int>(proven_.size()) == config_.size - 1; }
  // Ranks that have not proven their identity yet.
  std::vector<int> missing() const;
  // For a timeout error: per missing rank, what its attempts were refused for and what it told
  // us, e.g. "rank 2: its JOIN was refused: key SHA256:... is not in the trust store".
  std::string MissingReport() const;

  // Drops what this handshake knows of `peer` (its session keys, key binding and answered JOINs),
  // so that a restarted `peer` can run the handshake again with a fresh JOIN (elastic rejoin,
  // docs/membership.md). Nonces already seen stay refused: an old JOIN cannot be replayed.
  void Forget(int peer);

  // Session keys with a proven rank; nullptr until it is proven.
  const PairKeys* keys(int peer) const;
  const Fingerprint& fingerprint() const { return config_.key->fingerprint(); }

 private:
  struct Answered {  // a JOIN we answered with a proof
    Bytes nonce;
    PublicKey key;
    SecretBytes share;  // the key share we sent
  };
  explicit JoinHandshake(JoinConfig config) : config_(std::move(config)) {}
  // Records why a message claiming `from` was refused; with `their_nonce`, also builds the
  // REFUSAL that tells `from` (echoing its nonce, so it can tell the refusal is fresh).
  Step Refuse(int from, std::optional<ByteSpan> their_nonce, std::string reason,
              std::string detail);
  Step OnProof(int from, ByteSpan body);
  Step OnRefusal(int from, ByteSpan body);
  Result<Bytes> Proof(int to, const Answered& answered, ByteSpan share_ct) const;
  PairKeys Derive(int peer, const Answered& answered, const SecretBytes& their_share) const;

  JoinConfig config_;
  Bytes nonce_;
  std::set<std::string> seen_nonces_;              // of every JOIN answered (raw bytes)
  std::map<int, std::vector<Answered>> answered_;  // per claimed rank, bounded
  std::map<int, PairKeys> proven_;
  std::map<Fingerprint, int> key_owner_;       // proven keys -> rank
  std::map<int, std::string> refused_, told_;  // for MissingReport
};

}  // namespace p2p::crypto
