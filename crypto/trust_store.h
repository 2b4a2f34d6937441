// TrustStore: the public keys allowed in a run, and optionally which rank each key may take.
//
// `--trust PATH` is a directory (every regular file not starting with '.' must be a PEM file of
// public keys) or one PEM file holding one or more public keys. Any file that is not a public key
// is an error naming it, never silently skipped: a typo must not quietly lock a peer out, and a
// private key in a trust directory is a leak to fix.
//
// `--manifest FILE` (optional) binds ranks to keys, one "<rank> <fingerprint>" per line ('#'
// starts a comment), e.g. "0 SHA256:3f2a...". With a manifest, rank r may only be taken by the key
// bound to r; without one, any trusted key may take any free rank (first proof wins).
//
// Thread-safety: immutable after loading.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "crypto/keys.h"

namespace p2p::crypto {

class TrustStore {
 public:
  TrustStore() = default;
  // InvalidArgument naming the file for anything that is not a public key; NotFound if `path`
  // does not exist; InvalidArgument if it holds no key at all.
  static Result<TrustStore> Load(const std::string& path);

  void Add(PublicKey key);
  const PublicKey* Find(const Fingerprint& fp) const;
  size_t size() const { return keys_.size(); }
  std::vector<Fingerprint> Fingerprints() const;

  // Reads a manifest for a run of `size` ranks: every rank 0..size-1 must be bound exactly once,
  // to a key that is in this store, and no key to two ranks.
  Status LoadManifest(const std::string& path, int size);
  void BindRank(int rank, const Fingerprint& fp);
  bool has_manifest() const { return !rank_to_key_.empty(); }

  // Why the key `fp` may not take `rank` ("" when it may): not trusted, or bound to another rank
  // by the manifest. The text names fingerprints only.
  std::string WhyNot(int rank, const Fingerprint& fp) const;
  // The machine-readable reason matching WhyNot: "untrusted_key" or "wrong_rank" ("" if allowed).
  std::string ReasonNot(int rank, const Fingerprint& fp) const;

 private:
  std::map<Fingerprint, PublicKey> keys_;
  std::map<int, Fingerprint> rank_to_key_;
};

}  // namespace p2p::crypto
