// RSA operations on identities: RSA-PSS signatures and RSA-OAEP encryption (both SHA-256, MGF1
// with SHA-256; PSS salt length = 32, the digest length).
//
// A message is given as pieces that are hashed in order, as if concatenated, so a large body is
// never copied to be signed.
//
// Thread-safety: pure functions; keys are immutable.
#pragma once

#include <initializer_list>
#include <span>

#include "common/status.h"
#include "crypto/keys.h"

namespace p2p::crypto {

using Pieces = std::span<const ByteSpan>;

// RSA-PSS/SHA-256 signature over the concatenation of `pieces`; key.bits()/8 bytes.
Result<Bytes> SignPss(const PrivateKey& key, Pieces pieces);
// True iff `signature` is a valid RSA-PSS/SHA-256 signature by `key` over the pieces.
bool VerifyPss(const PublicKey& key, Pieces pieces, ByteSpan signature);

// RSA-OAEP/SHA-256 encryption of a short secret (at most key bytes - 66) to `key`.
Result<Bytes> EncryptOaep(const PublicKey& key, ByteSpan plaintext);
// Decryption with our private key. InvalidArgument when `ciphertext` was not made for this key
// or was altered (no detail: OAEP failures must not tell an attacker why).
Result<SecretBytes> DecryptOaep(const PrivateKey& key, ByteSpan ciphertext);

}  // namespace p2p::crypto
