#include "peer/rendezvous_auth.h"

#include <algorithm>
#include <initializer_list>

#include "crypto/rsa.h"

namespace p2p::peer {

broker::RegistrationSigner MakeRegistrationSigner(const crypto::PrivateKey& key) {
  const auto& fp = key.fingerprint().bytes;
  broker::RegistrationSigner signer;
  signer.key_id.assign(fp.begin(), fp.end());
  signer.sign = [&key](std::span<const std::byte> message) -> Result<broker::Bytes> {
    const crypto::ByteSpan pieces[] = {message};
    return crypto::SignPss(key, pieces);
  };
  return signer;
}

broker::rendezvous::Verifier MakeRegistrationVerifier(
    std::shared_ptr<const crypto::TrustStore> trust) {
  return [trust = std::move(trust)](std::span<const std::byte> key_id,
                                    std::span<const std::byte> message,
                                    std::span<const std::byte> signature) -> std::string {
    crypto::Fingerprint fp;
    if (key_id.size() != fp.bytes.size()) return "untrusted_key";
    std::copy(key_id.begin(), key_id.end(), fp.bytes.begin());
    const crypto::PublicKey* key = trust->Find(fp);
    if (key == nullptr) return "untrusted_key";
    const crypto::ByteSpan pieces[] = {message};
    return crypto::VerifyPss(*key, pieces, signature) ? "" : "bad_signature";
  };
}

}  // namespace p2p::peer
