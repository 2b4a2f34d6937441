// RSA keys for tests, generated once per test process (never checked in). 2048 bits: the smallest
// accepted size, and the fastest to generate.
#pragma once

#include <gtest/gtest.h>

#include <deque>
#include <mutex>

#include "crypto/keys.h"
#include "crypto/trust_store.h"

namespace p2p::crypto::testing {

inline const PrivateKey& TestKey(int i) {
  static std::mutex mu;
  static std::deque<PrivateKey> keys;
  std::lock_guard lock(mu);
  while (static_cast<int>(keys.size()) <= i) {
    auto key = PrivateKey::Generate(kMinRsaBits);
    if (!key.ok()) throw std::runtime_error(key.status().ToString());
    keys.push_back(std::move(*key));
  }
  return keys[i];
}

// A trust store of the public keys of TestKey(0..n-1).
inline TrustStore TrustFirst(int n) {
  TrustStore store;
  for (int i = 0; i < n; ++i) store.Add(TestKey(i).public_key());
  return store;
}

}  // namespace p2p::crypto::testing
