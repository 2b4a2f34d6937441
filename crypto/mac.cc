#include "crypto/mac.h"

#include <openssl/core_names.h>
#include <openssl/params.h>

namespace p2p::crypto {
namespace {

// Algorithms are fetched once per process (a fetch takes a lock and a lookup).
const EVP_MAC* HmacAlgorithm() {
  static const MacPtr mac(EVP_MAC_fetch(nullptr, "HMAC", nullptr));
  P2P_CHECK(mac != nullptr, "OpenSSL has no HMAC: {}", OpensslErrors());
  return mac.get();
}

const EVP_CIPHER* ChachaPoly() {
  static const CipherPtr cipher(EVP_CIPHER_fetch(nullptr, "ChaCha20-Poly1305", nullptr));
  P2P_CHECK(cipher != nullptr, "OpenSSL has no ChaCha20-Poly1305: {}", OpensslErrors());
  return cipher.get();
}

const EVP_MD* Sha256Algorithm() {
  static const MdPtr md(EVP_MD_fetch(nullptr, "SHA256", nullptr));
  P2P_CHECK(md != nullptr, "OpenSSL has no SHA-256: {}", OpensslErrors());
  return md.get();
}

}  // namespace

Sha256Digest Sha256(Pieces pieces) {
  MdCtxPtr ctx(EVP_MD_CTX_new());
  bool ok = ctx && EVP_DigestInit_ex2(ctx.get(), Sha256Algorithm(), nullptr) == 1;
  for (ByteSpan piece : pieces) {
    ok = ok && EVP_DigestUpdate(ctx.get(), piece.data(), piece.size()) == 1;
  }
  Sha256Digest out{};
  unsigned int len = 0;
  ok = ok && EVP_DigestFinal_ex(ctx.get(), reinterpret_cast<unsigned char*>(out.data()), &len) == 1;
  P2P_CHECK(ok && len == out.size(), "SHA-256 failed: {}", OpensslErrors());
  return out;
}

Sha256Digest HmacSha256(const SecretBytes& key, Pieces pieces) {
  P2P_CHECK(key.size() == kMacKeyBytes, "HMAC key of {} bytes", key.size());
  MacCtxPtr ctx(EVP_MAC_CTX_new(const_cast<EVP_MAC*>(HmacAlgorithm())));
  char digest[] = "SHA256";
  const OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                               OSSL_PARAM_END};
  bool ok = ctx && EVP_MAC_init(ctx.get(), key.uchar(), key.size(), params) == 1;
  for (ByteSpan piece : pieces) ok = ok && EVP_MAC_update(ctx.get(), U8(piece), piece.size()) == 1;
  Sha256Digest out{};
  size_t len = 0;
  ok = ok && EVP_MAC_final(ctx.get(), reinterpret_cast<unsigned char*>(out.data()), &len,
                           out.size()) == 1;
  P2P_CHECK(ok && len == out.size(), "HMAC-SHA-256 failed: {}", OpensslErrors());
  return out;
}

PolyTag Poly1305Tag(const SecretBytes& key, uint64_t nonce, ByteSpan data) {
  P2P_CHECK(key.size() == kMacKeyBytes, "ChaCha20 key of {} bytes", key.size());
  unsigned char iv[12] = {};  // 32 zero bits, then the 64-bit nonce little-endian
  for (int i = 0; i < 8; ++i) iv[4 + i] = static_cast<unsigned char>(nonce >> (8 * i));
  CipherCtxPtr ctx(EVP_CIPHER_CTX_new());
  int len = 0;
  bool ok = ctx && EVP_EncryptInit_ex2(ctx.get(), ChachaPoly(), key.uchar(), iv, nullptr) == 1;
  // EVP takes int lengths: feed large bodies in pieces.
  constexpr size_t kStep = size_t{1} << 30;
  for (size_t at = 0; ok && at < data.size(); at += kStep) {
    const size_t n = std::min(kStep, data.size() - at);
    ok = EVP_EncryptUpdate(ctx.get(), nullptr, &len, U8(data) + at, static_cast<int>(n)) == 1;
  }
  unsigned char none[1];
  ok = ok && EVP_EncryptFinal_ex(ctx.get(), none, &len) == 1;
  PolyTag tag{};
  ok = ok && EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_AEAD_GET_TAG, static_cast<int>(tag.size()),
                                 tag.data()) == 1;
  P2P_CHECK(ok, "ChaCha20-Poly1305 failed: {}", OpensslErrors());
  return tag;
}

SecretBytes HkdfSha256(ByteSpan ikm, ByteSpan salt, ByteSpan info, size_t length) {
  static const KdfPtr kdf(EVP_KDF_fetch(nullptr, "HKDF", nullptr));
  P2P_CHECK(kdf != nullptr, "OpenSSL has no HKDF: {}", OpensslErrors());
  KdfCtxPtr ctx(EVP_KDF_CTX_new(kdf.get()));
  char digest[] = "SHA256";
  auto octets = [](const char* name, ByteSpan s) {
    return OSSL_PARAM_construct_octet_string(name, const_cast<unsigned char*>(U8(s)), s.size());
  };
  const OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, digest, 0),
                               octets(OSSL_KDF_PARAM_KEY, ikm), octets(OSSL_KDF_PARAM_SALT, salt),
                               octets(OSSL_KDF_PARAM_INFO, info), OSSL_PARAM_END};
  SecretBytes out(length);
  const bool ok = ctx && EVP_KDF_derive(ctx.get(), reinterpret_cast<unsigned char*>(out.data()),
                                        length, params) == 1;
  P2P_CHECK(ok, "HKDF failed: {}", OpensslErrors());
  return out;
}

}  // namespace p2p::crypto
