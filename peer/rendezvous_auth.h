// Signed rendezvous registrations (docs/security.md, "The rendezvous"): a peer with an identity
// signs its registration with its RSA key; `p2ptrain broker --trust DIR` checks each one against
// its trust store. broker/ knows neither keys nor trust stores (it does not link crypto/), so
// the two sides are plugged into it here as functions.
#pragma once

#include <memory>

#include "broker/rendezvous.h"
#include "crypto/keys.h"
#include "crypto/trust_store.h"

namespace p2p::peer {

// Signs with `key` (RSA-PSS/SHA-256); `key` must outlive the signer.
broker::RegistrationSigner MakeRegistrationSigner(const crypto::PrivateKey& key);

// Accepts registrations signed by any key in `trust`.
broker::rendezvous::Verifier MakeRegistrationVerifier(
    std::shared_ptr<const crypto::TrustStore> trust);

}  // namespace p2p::peer
