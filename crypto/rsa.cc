#include "crypto/rsa.h"

#include <openssl/rsa.h>

namespace p2p::crypto {
namespace {

constexpr int kPssSaltBytes = 32;  // = SHA-256 output

// Sets PSS padding, SHA-256 MGF1 and the salt length on a DigestSign/DigestVerify context.
bool ConfigurePss(EVP_PKEY_CTX* pctx) {
  return EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) == 1 &&
         EVP_PKEY_CTX_set_rsa_mgf1_md_name(pctx, "SHA256", nullptr) == 1 &&
         EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, kPssSaltBytes) == 1;
}

bool ConfigureOaep(EVP_PKEY_CTX* ctx) {
  return EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_OAEP_PADDING) == 1 &&
         EVP_PKEY_CTX_set_rsa_oaep_md_name(ctx, "SHA256", nullptr) == 1 &&
         EVP_PKEY_CTX_set_rsa_mgf1_md_name(ctx, "SHA256", nullptr) == 1;
}

}  // namespace

Result<Bytes> SignPss(const PrivateKey& key, Pieces pieces) {
  MdCtxPtr ctx(EVP_MD_CTX_new());
  EVP_PKEY_CTX* pctx = nullptr;  // owned by ctx
  if (!ctx ||
      EVP_DigestSignInit_ex(ctx.get(), &pctx, "SHA256", nullptr, nullptr, key.get(), nullptr) !=
          1 ||
      !ConfigurePss(pctx)) {
    return OpensslFailure("RSA-PSS sign setup");
  }
  for (ByteSpan piece : pieces) {
    if (EVP_DigestSignUpdate(ctx.get(), piece.data(), piece.size()) != 1) {
      return OpensslFailure("RSA-PSS sign");
    }
  }
  size_t len = 0;
  if (EVP_DigestSignFinal(ctx.get(), nullptr, &len) != 1) return OpensslFailure("RSA-PSS sign");
  Bytes sig(len);
  if (EVP_DigestSignFinal(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &len) != 1) {
    return OpensslFailure("RSA-PSS sign");
  }
  sig.resize(len);
  return sig;
}

bool VerifyPss(const PublicKey& key, Pieces pieces, ByteSpan signature) {
  MdCtxPtr ctx(EVP_MD_CTX_new());
  EVP_PKEY_CTX* pctx = nullptr;
  bool ok = ctx &&
            EVP_DigestVerifyInit_ex(ctx.get(), &pctx, "SHA256", nullptr, nullptr, key.get(),
                                    nullptr) == 1 &&
            ConfigurePss(pctx);
  for (ByteSpan piece : pieces) {
    ok = ok && EVP_DigestVerifyUpdate(ctx.get(), piece.data(), piece.size()) == 1;
  }
  ok = ok && EVP_DigestVerifyFinal(ctx.get(), U8(signature), signature.size()) == 1;
  if (!ok) OpensslErrors();  // a bad signature leaves errors queued; do not leak them elsewhere
  return ok;
}

Result<Bytes> EncryptOaep(const PublicKey& key, ByteSpan plaintext) {
  PkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_pkey(nullptr, key.get(), nullptr));
  if (!ctx || EVP_PKEY_encrypt_init(ctx.get()) != 1 || !ConfigureOaep(ctx.get())) {
    return OpensslFailure("RSA-OAEP setup");
  }
  size_t len = 0;
  if (EVP_PKEY_encrypt(ctx.get(), nullptr, &len, U8(plaintext), plaintext.size()) != 1) {
    return OpensslFailure("RSA-OAEP encrypt");
  }
  Bytes out(len);
  if (EVP_PKEY_encrypt(ctx.get(), reinterpret_cast<unsigned char*>(out.data()), &len, U8(plaintext),
                       plaintext.size()) != 1) {
    return OpensslFailure("RSA-OAEP encrypt");
  }
  out.resize(len);
  return out;
}

Result<SecretBytes> DecryptOaep(const PrivateKey& key, ByteSpan ciphertext) {
  PkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_pkey(nullptr, key.get(), nullptr));
  if (!ctx || EVP_PKEY_decrypt_init(ctx.get()) != 1 || !ConfigureOaep(ctx.get())) {
    return OpensslFailure("RSA-OAEP setup");
  }
  size_t len = 0;
  if (EVP_PKEY_decrypt(ctx.get(), nullptr, &len, U8(ciphertext), ciphertext.size()) != 1) {
    OpensslErrors();
    return InvalidArgument("RSA-OAEP: cannot decrypt (not encrypted to this key, or altered)");
  }
  SecretBytes out(len);
  if (EVP_PKEY_decrypt(ctx.get(), reinterpret_cast<unsigned char*>(out.data()), &len,
                       U8(ciphertext), ciphertext.size()) != 1) {
    OpensslErrors();
    return InvalidArgument("RSA-OAEP: cannot decrypt (not encrypted to this key, or altered)");
  }
  SecretBytes exact(ByteSpan(out.data(), len));
  return exact;
}

}  // namespace p2p::crypto
