// A peer's identity and trust: the --key/--trust/--manifest/--insecure flags, loading them, the
// join handshake after Connect, and per-run keys for `p2ptrain launch` (docs/security.md).
//
// Authentication is on by default: `p2ptrain peer` without --key and --trust is a usage error
// telling the user to run `p2ptrain keygen` or to pass --insecure, which turns authentication off
// and says so loudly. Secrets never reach logs, metrics, error messages or child command lines:
// passphrases come from an environment variable given by name, keys by file path.
#pragma once

#include <CLI/CLI.hpp>
#include <memory>
#include <string>
#include <vector>

#include "broker/transport.h"
#include "common/status.h"
#include "crypto/keys.h"
#include "crypto/trust_store.h"
#include "peer/peer_options.h"
#include "sync/session_auth.h"

namespace p2p::peer {

void AddSecurityFlags(CLI::App& cmd, PeerOptions& options);
// InvalidArgument naming the flags when neither --insecure nor --key and --trust are given, or
// --insecure is combined with them.
Status CheckSecurityFlags(const PeerOptions& options);

// What a peer with an identity holds for the run: its key, the trust store and the Mailbox
// authenticator that runs the join handshake and then signs and checks every envelope.
class PeerSecurity {
 public:
  // Loads --key (and its passphrase), --trust and --manifest; errors name the flag and the file.
  // nullptr with --insecure (after a loud warning).
  static Result<std::unique_ptr<PeerSecurity>> Load(const PeerOptions& options, int rank, int size);

  sync::Authenticator* authenticator() { return auth_.get(); }
  // This peer's key (signs its rendezvous registration: peer/rendezvous_auth.h).
  const crypto::PrivateKey& key() const { return key_; }
  // The join handshake with every other rank (after Connect, before the start agreement).
  Status Join(sync::Mailbox& mailbox, broker::Deadline deadline);

 private:
  PeerSecurity(crypto::PrivateKey key, crypto::TrustStore trust)
      : key_(std::move(key)), trust_(std::move(trust)) {}
  crypto::PrivateKey key_;
  crypto::TrustStore trust_;
  std::unique_ptr<sync::SessionAuthenticator> auth_;  // refers to key_ and trust_
};

// Fresh identities for the ranks of one local run (`p2ptrain launch` without --key/--trust/
// --insecure): a private temporary directory (mode 0700) holding rank-<r>/private.pem (0600),
// trust/rank-<r>.pem and a manifest binding each rank to its key. Removed with the object.
class RunKeys {
 public:
  static Result<std::unique_ptr<RunKeys>> Create(int size, int bits);
  ~RunKeys();
  RunKeys(const RunKeys&) = delete;
  RunKeys& operator=(const RunKeys&) = delete;

  const std::string& dir() const { return dir_; }
  // --key, --trust and --manifest for rank r (paths only: nothing secret on a command line).
  std::vector<std::string> PeerFlags(int rank) const;

 private:
  explicit RunKeys(std::string dir) : dir_(std::move(dir)) {}
  std::string dir_;
};
// True when launch should create RunKeys: the peer flags bring no identity and no --insecure.
bool NeedsRunKeys(const std::vector<std::string>& peer_args);
// RSA size of the per-run keys launch generates (they live for one local run).
inline constexpr int kRunKeyBits = 2048;

}  // namespace p2p::peer
