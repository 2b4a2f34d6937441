// RSA identities: key pairs, their PEM files and their fingerprints.
//
// A peer's identity is its RSA key pair. The identity others see is the key's fingerprint: the
// SHA-256 of the public key's DER SubjectPublicKeyInfo, written "SHA256:<64 lowercase hex>".
// `p2ptrain keygen` writes private.pem (PKCS#8, mode 0600, optionally encrypted with a passphrase:
// AES-256-CBC under PBKDF2) and public.pem (SubjectPublicKeyInfo).
//
// Key files are checked strictly and every failure names the file and what to do: missing,
// unreadable, a private key readable by group or others (refused, like ssh does: a key others
// could copy proves nothing), malformed PEM, a public key where a private one is needed, a key
// that is not RSA, RSA under 2048 or over 8192 bits, an encrypted key without a passphrase, a
// wrong passphrase. Passphrases come only from an environment variable; no message ever contains
// a passphrase or key material.
//
// Thread-safety: keys are immutable after loading; share them across threads freely.
#pragma once

#include <array>
#include <compare>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "crypto/openssl_util.h"

namespace p2p::crypto {

inline constexpr int kMinRsaBits = 2048;
inline constexpr int kMaxRsaBits = 8192;  // verifying with huge keys would be a cheap DoS
inline constexpr int kDefaultRsaBits = 3072;

struct Fingerprint {
  std::array<std::byte, 32> bytes{};
  // "SHA256:" + 64 lowercase hex digits.
  std::string ToString() const;
  // The first 12 hex digits, for log lines ("SHA256:3f2a9c01b7de").
  std::string Short() const;
  // Accepts "SHA256:<hex>" or bare hex (64 digits, any case). InvalidArgument otherwise.
  static Result<Fingerprint> Parse(std::string_view text);
  auto operator<=>(const Fingerprint&) const = default;
};

class PublicKey {
 public:
  // From DER SubjectPublicKeyInfo (untrusted input). InvalidArgument if it is not an RSA key of
  // kMinRsaBits..kMaxRsaBits.
  static Result<PublicKey> FromDer(ByteSpan der);
  // From PEM text ("-----BEGIN PUBLIC KEY-----"); `source` names it in errors.
  static Result<PublicKey> FromPem(std::string_view pem, std::string_view source);

  PublicKey(const PublicKey& other);
  PublicKey& operator=(const PublicKey& other);
  PublicKey(PublicKey&&) noexcept = default;
  PublicKey& operator=(PublicKey&&) noexcept = default;

  EVP_PKEY* get() const { return key_.get(); }
  const Bytes& der() const { return der_; }
  const Fingerprint& fingerprint() const { return fingerprint_; }
  int bits() const;
  std::string ToPem() const;

 private:
  friend class PrivateKey;
  PublicKey() = default;
  static Result<PublicKey> Adopt(PkeyPtr key, std::string_view source);
  // Copies share the immutable EVP_PKEY (EVP_PKEY_up_ref); the last owner frees it.
  PkeyPtr key_;
  Bytes der_;
  Fingerprint fingerprint_;
};

class PrivateKey {
 public:
  // A fresh RSA key of `bits` (kMinRsaBits..kMaxRsaBits), public exponent 65537.
  static Result<PrivateKey> Generate(int bits);
  // From PEM text (PKCS#8 or traditional, plain or encrypted); `source` names it in errors.
  static Result<PrivateKey> FromPem(std::string_view pem, std::string_view source,
                                    const std::optional<std::string>& passphrase);

  EVP_PKEY* get() const { return key_.get(); }
  const PublicKey& public_key() const { return public_; }
  const Fingerprint& fingerprint() const { return public_.fingerprint(); }
  // PKCS#8 PEM; encrypted (AES-256-CBC, PBKDF2-HMAC-SHA-256, 600k iterations) with `passphrase`.
  Result<std::string> ToPem(const std::optional<std::string>& passphrase) const;

 private:
  PrivateKey(PkeyPtr key, PublicKey pub) : key_(std::move(key)), public_(std::move(pub)) {}
  static Result<PrivateKey> Adopt(PkeyPtr key, std::string_view source);
  PkeyPtr key_;
  PublicKey public_;
};

// Reads a private key file: checks existence, type (a regular file) and permissions (refused when
// group or others may read it), then parses it. Errors are InvalidArgument (bad file: the user
// must fix something) or NotFound/IoError, each naming the path and the fix.
Result<PrivateKey> LoadPrivateKey(const std::string& path,
                                  const std::optional<std::string>& passphrase);
// Reads a public key file (exactly one PEM public key).
Result<PublicKey> LoadPublicKey(const std::string& path);
// Every PEM public key in a file (at least one); refuses private keys in it.
Result<std::vector<PublicKey>> LoadPublicKeys(const std::string& path);

// Writes `key` to `path`, which must not exist (created with O_EXCL and mode 0600, so the key is
// never readable by others, not even briefly).
Status WritePrivateKey(const std::string& path, const PrivateKey& key,
                       const std::optional<std::string>& passphrase);
// Writes the public key to `path` (must not exist), mode 0644.
Status WritePublicKey(const std::string& path, const PublicKey& key);

// The passphrase in environment variable `var` (its name only ever appears in messages).
// InvalidArgument if the variable is unset or empty.
Result<std::string> PassphraseFromEnv(const std::string& var);

}  // namespace p2p::crypto
