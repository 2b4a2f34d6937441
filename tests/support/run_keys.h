// Identities for the peers of a test run: fresh keys for each run size, generated on first use in
// this test process (never checked in) with peer::RunKeys, which also writes the trust directory
// and a manifest. Header-only; for tests that link p2p_peer.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "peer/peer_security.h"

namespace p2p::test {

inline const peer::RunKeys& RunKeysFor(int size) {
  static std::mutex mu;
  static std::map<int, std::unique_ptr<peer::RunKeys>> keys;
  std::lock_guard lock(mu);
  auto& slot = keys[size];
  if (!slot) {
    auto created = peer::RunKeys::Create(size, peer::kRunKeyBits);
    if (!created.ok()) throw std::runtime_error(created.status().ToString());
    slot = std::move(*created);
  }
  return *slot;
}

// --key/--trust/--manifest of rank `rank` in a run of `size`.
inline std::vector<std::string> IdentityFlags(int size, int rank) {
  return RunKeysFor(size).PeerFlags(rank);
}

}  // namespace p2p::test
