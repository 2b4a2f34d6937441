// RAII owners for OpenSSL handles, the error queue as text, secret buffers and randomness.
//
// Every OpenSSL object p2ptrain holds is owned by exactly one std::unique_ptr with the matching
// free function, so no handle outlives its owner and no early return leaks one. Only the EVP
// (OpenSSL 3 provider) API is used; no deprecated RSA_* / HMAC_* calls.
//
// Thread-safety: the functions are thread-safe (OpenSSL 3 is); each owner is used by one thread.
#pragma once

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>

#include <cstddef>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace p2p::crypto {

using Bytes = std::vector<std::byte>;
using ByteSpan = std::span<const std::byte>;

template <auto Free>
struct OpensslDeleter {
  template <typename T>
  void operator()(T* p) const {
    Free(p);
  }
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, OpensslDeleter<EVP_PKEY_free>>;
using PkeyCtxPtr = std::unique_ptr<EVP_PKEY_CTX, OpensslDeleter<EVP_PKEY_CTX_free>>;
using MdCtxPtr = std::unique_ptr<EVP_MD_CTX, OpensslDeleter<EVP_MD_CTX_free>>;
using MdPtr = std::unique_ptr<EVP_MD, OpensslDeleter<EVP_MD_free>>;
using MacPtr = std::unique_ptr<EVP_MAC, OpensslDeleter<EVP_MAC_free>>;
using MacCtxPtr = std::unique_ptr<EVP_MAC_CTX, OpensslDeleter<EVP_MAC_CTX_free>>;
using CipherPtr = std::unique_ptr<EVP_CIPHER, OpensslDeleter<EVP_CIPHER_free>>;
using CipherCtxPtr = std::unique_ptr<EVP_CIPHER_CTX, OpensslDeleter<EVP_CIPHER_CTX_free>>;
using KdfPtr = std::unique_ptr<EVP_KDF, OpensslDeleter<EVP_KDF_free>>;
using KdfCtxPtr = std::unique_ptr<EVP_KDF_CTX, OpensslDeleter<EVP_KDF_CTX_free>>;
using BioPtr = std::unique_ptr<BIO, OpensslDeleter<BIO_free_all>>;

// Drains OpenSSL's (thread-local) error queue into one line, e.g. "error:1E08010C:DECODER
// routines::unsupported"; "no details" when it is empty. Never contains key material.
std::string OpensslErrors();
// Internal("{what}: {OpensslErrors()}") for calls that fail only on a broken OpenSSL or memory.
Status OpensslFailure(std::string_view what);

// Key material (session keys, key shares, passphrases): wiped with OPENSSL_cleanse when destroyed
// or overwritten. Move-only, so a secret has one owner.
class SecretBytes {
 public:
  SecretBytes() = default;
  explicit SecretBytes(size_t n) : bytes_(n) {}
  SecretBytes(ByteSpan data) : bytes_(data.begin(), data.end()) {}  // NOLINT: implicit copy-in
  SecretBytes(SecretBytes&& other) noexcept : bytes_(std::move(other.bytes_)) {}
  SecretBytes& operator=(SecretBytes&& other) noexcept;
  SecretBytes(const SecretBytes&) = delete;
  SecretBytes& operator=(const SecretBytes&) = delete;
  ~SecretBytes() { Wipe(); }

  std::byte* data() { return bytes_.data(); }
  const std::byte* data() const { return bytes_.data(); }
  size_t size() const { return bytes_.size(); }
  bool empty() const { return bytes_.empty(); }
  ByteSpan span() const { return bytes_; }
  const unsigned char* uchar() const { return reinterpret_cast<const unsigned char*>(data()); }

 private:
  void Wipe();
  std::vector<std::byte> bytes_;
};

// Cryptographically secure random bytes (RAND_bytes from OpenSSL's default DRBG).
Result<Bytes> RandomBytes(size_t n);
Result<SecretBytes> RandomSecret(size_t n);

// Constant-time comparison of equal-length tags (CRYPTO_memcmp); false when lengths differ.
bool ConstantTimeEqual(ByteSpan a, ByteSpan b);

// "3f2a..." (lowercase hex) and back; std::nullopt-like failure as InvalidArgument naming `what`.
std::string ToHex(ByteSpan bytes);
Result<Bytes> FromHex(std::string_view hex, std::string_view what);

inline const unsigned char* U8(ByteSpan s) {
  return reinterpret_cast<const unsigned char*>(s.data());
}
inline ByteSpan AsBytes(std::string_view s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

}  // namespace p2p::crypto
