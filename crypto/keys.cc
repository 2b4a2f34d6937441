#include "crypto/keys.h"

#include <fcntl.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>
#include <openssl/x509.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

namespace p2p::crypto {
namespace {

constexpr std::string_view kFingerprintPrefix = "SHA256:";
constexpr size_t kMaxKeyFileBytes = 1 << 20;  // a PEM key is a few KiB; refuse anything huge
constexpr int kPbkdf2Iterations = 600'000;    // OWASP's 2023 figure for PBKDF2-HMAC-SHA-256

PkeyPtr UpRef(EVP_PKEY* key) {
  if (key != nullptr) EVP_PKEY_up_ref(key);
  return PkeyPtr(key);
}

Fingerprint FingerprintOf(ByteSpan der) {
  Fingerprint fp;
  unsigned int len = 0;
  const bool ok =
      EVP_Digest(der.data(), der.size(), reinterpret_cast<unsigned char*>(fp.bytes.data()), &len,
                 EVP_sha256(), nullptr) == 1;
  P2P_CHECK(ok && len == fp.bytes.size(), "SHA-256 failed: {}", OpensslErrors());
  return fp;
}

// Why a parsed key cannot be an identity, or "" if it can.
std::string KeyProblem(EVP_PKEY* key) {
  if (EVP_PKEY_is_a(key, "RSA-PSS")) {
    return "it is an RSA-PSS-restricted key; p2ptrain identities are plain RSA keys (make one "
           "with `p2ptrain keygen`)";
  }
  if (!EVP_PKEY_is_a(key, "RSA")) {
    return fmt::format(
        "it holds a {} key; p2ptrain identities are RSA keys (make one with "
        "`p2ptrain keygen`)",
        EVP_PKEY_get0_type_name(key) ? EVP_PKEY_get0_type_name(key) : "non-RSA");
  }
  const int bits = EVP_PKEY_get_bits(key);
  if (bits < kMinRsaBits || bits > kMaxRsaBits) {
    return fmt::format("its RSA key has {} bits; p2ptrain accepts {}..{}", bits, kMinRsaBits,
                       kMaxRsaBits);
  }
  return "";
}

Result<Bytes> SpkiDer(EVP_PKEY* key) {
  unsigned char* der = nullptr;
  const int len = i2d_PUBKEY(key, &der);
  if (len <= 0) return OpensslFailure("encoding a public key");
  Bytes out(reinterpret_cast<std::byte*>(der), reinterpret_cast<std::byte*>(der) + len);
  OPENSSL_free(der);
  return out;
}

BioPtr MemoryBio(std::string_view text) {
  return BioPtr(BIO_new_mem_buf(text.data(), static_cast<int>(text.size())));
}

std::string BioText(BIO* bio) {
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio, &data);
  return std::string(data, static_cast<size_t>(len));
}

// OpenSSL must never prompt on the terminal: this callback supplies the passphrase or fails.
int PassphraseCallback(char* buf, int size, int /*rwflag*/, void* u) {
  const auto* pass = static_cast<const std::optional<std::string>*>(u);
  if (pass == nullptr || !pass->has_value()) return -1;
  const auto& p = **pass;
  if (p.size() > static_cast<size_t>(size)) return -1;
  std::memcpy(buf, p.data(), p.size());
  return static_cast<int>(p.size());
}

bool IsEncryptedPem(std::string_view pem) {
  return pem.find("-----BEGIN ENCRYPTED PRIVATE KEY-----") != std::string_view::npos ||
         pem.find("Proc-Type: 4,ENCRYPTED") != std::string_view::npos;
}

bool HasPublicKeyPem(std::string_view pem) {
  return pem.find("-----BEGIN PUBLIC KEY-----") != std::string_view::npos ||
         pem.find("-----BEGIN RSA PUBLIC KEY-----") != std::string_view::npos;
}

bool HasPrivateKeyPem(std::string_view pem) {
  return pem.find("PRIVATE KEY-----") != std::string_view::npos;
}

// Reads a small file; the errors name the path and the cause.
Result<std::string> ReadKeyFile(const std::string& path, std::string_view what) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) {
      return NotFound(
          "{} file {} does not exist (create a key pair with `p2ptrain keygen --out "
          "DIR`)",
          what, path);
    }
    return IoError("{} file {}: {}", what, path, std::strerror(errno));
  }
  if (!S_ISREG(st.st_mode)) return InvalidArgument("{} file {} is not a regular file", what, path);
  if (st.st_size > static_cast<off_t>(kMaxKeyFileBytes)) {
    return InvalidArgument("{} file {} is {} bytes: too large for a PEM key", what, path,
                           st.st_size);
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return IoError("cannot read {} file {}: {}", what, path, std::strerror(errno));
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return IoError("reading {} file {} failed", what, path);
  return text.str();
}

// Creates `path` exclusively with `mode` and writes `text`; removes it again on failure.
Status WriteNewFile(const std::string& path, std::string_view text, mode_t mode) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0) {
    if (errno == EEXIST) {
      return InvalidArgument(
          "{} already exists; refusing to overwrite a key (remove it first or "
          "choose another --out)",
          path);
    }
    return IoError("creating {}: {}", path, std::strerror(errno));
  }
  // The umask may have removed bits we want (0644 for public keys); it can never add any.
  (void)::fchmod(fd, mode);
  size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const std::string why = std::strerror(errno);
      ::close(fd);
      ::unlink(path.c_str());
      return IoError("writing {}: {}", path, why);
    }
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    const std::string why = std::strerror(errno);
    ::unlink(path.c_str());
    return IoError("writing {}: {}", path, why);
  }
  return Status::Ok();
}

}  // namespace

std::string Fingerprint::ToString() const { return std::string(kFingerprintPrefix) + ToHex(bytes); }

std::string Fingerprint::Short() const {
  return std::string(kFingerprintPrefix) + ToHex(bytes).substr(0, 12);
}

Result<Fingerprint> Fingerprint::Parse(std::string_view text) {
  std::string_view hex = text;
  if (hex.starts_with(kFingerprintPrefix)) hex.remove_prefix(kFingerprintPrefix.size());
  if (hex.size() != 64) {
    return InvalidArgument(
        "'{}' is not a key fingerprint (SHA256: and 64 hex digits, as printed "
        "by `p2ptrain keygen`)",
        text);
  }
  P2P_ASSIGN_OR_RETURN(Bytes raw, FromHex(hex, "key fingerprint"));
  Fingerprint fp;
  std::copy(raw.begin(), raw.end(), fp.bytes.begin());
  return fp;
}

PublicKey::PublicKey(const PublicKey& other)
    : key_(UpRef(other.key_.get())), der_(other.der_), fingerprint_(other.fingerprint_) {}

PublicKey& PublicKey::operator=(const PublicKey& other) {
  if (this != &other) {
    key_ = UpRef(other.key_.get());
    der_ = other.der_;
    fingerprint_ = other.fingerprint_;
  }
  return *this;
}

int PublicKey::bits() const { return EVP_PKEY_get_bits(key_.get()); }

Result<PublicKey> PublicKey::Adopt(PkeyPtr key, std::string_view source) {
  if (const std::string problem = KeyProblem(key.get()); !problem.empty()) {
    return InvalidArgument("{}: {}", source, problem);
  }
  PublicKey out;
  P2P_ASSIGN_OR_RETURN(out.der_, SpkiDer(key.get()));
  out.fingerprint_ = FingerprintOf(out.der_);
  out.key_ = std::move(key);
  return out;
}

Result<PublicKey> PublicKey::FromDer(ByteSpan der) {
  const unsigned char* p = U8(der);
  PkeyPtr key(d2i_PUBKEY(nullptr, &p, static_cast<long>(der.size())));
  if (key == nullptr || p != U8(der) + der.size()) {
    OpensslErrors();  // clear the queue
    return InvalidArgument("not a DER SubjectPublicKeyInfo");
  }
  return Adopt(std::move(key), "public key");
}

Result<PublicKey> PublicKey::FromPem(std::string_view pem, std::string_view source) {
  BioPtr bio = MemoryBio(pem);
  PkeyPtr key(PEM_read_bio_PUBKEY(bio.get(), nullptr, PassphraseCallback, nullptr));
  if (key == nullptr) {
    const std::string why = OpensslErrors();
    if (HasPrivateKeyPem(pem) && !HasPublicKeyPem(pem)) {
      return InvalidArgument(
          "{} holds a private key where a public key is expected (use the "
          "public.pem that `p2ptrain keygen` wrote next to it)",
          source);
    }
    return InvalidArgument("{} is not a PEM public key (-----BEGIN PUBLIC KEY-----): {}", source,
                           why);
  }
  return Adopt(std::move(key), source);
}

std::string PublicKey::ToPem() const {
  BioPtr bio(BIO_new(BIO_s_mem()));
  P2P_CHECK(bio && PEM_write_bio_PUBKEY(bio.get(), key_.get()) == 1, "PEM encoding failed: {}",
            OpensslErrors());
  return BioText(bio.get());
}

Result<PrivateKey> PrivateKey::Adopt(PkeyPtr key, std::string_view source) {
  if (const std::string problem = KeyProblem(key.get()); !problem.empty()) {
    return InvalidArgument("{}: {}", source, problem);
  }
  P2P_ASSIGN_OR_RETURN(Bytes der, SpkiDer(key.get()));
  const unsigned char* p = reinterpret_cast<const unsigned char*>(der.data());
  PkeyPtr pub(d2i_PUBKEY(nullptr, &p, static_cast<long>(der.size())));
  if (pub == nullptr) return OpensslFailure("extracting the public key");
  P2P_ASSIGN_OR_RETURN(PublicKey public_key, PublicKey::Adopt(std::move(pub), source));
  return PrivateKey(std::move(key), std::move(public_key));
}

Result<PrivateKey> PrivateKey::Generate(int bits) {
  if (bits < kMinRsaBits || bits > kMaxRsaBits) {
    return InvalidArgument("--bits {}: RSA keys must have {}..{} bits", bits, kMinRsaBits,
                           kMaxRsaBits);
  }
  PkeyPtr key(EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<size_t>(bits)));
  if (key == nullptr) return OpensslFailure("generating an RSA key");
  return Adopt(std::move(key), "generated key");
}

Result<PrivateKey> PrivateKey::FromPem(std::string_view pem, std::string_view source,
                                       const std::optional<std::string>& passphrase) {
  const bool encrypted = IsEncryptedPem(pem);
  if (encrypted && !passphrase) {
    return InvalidArgument(
        "{} is encrypted; pass --key-pass-env VAR naming an environment "
        "variable that holds its passphrase",
        source);
  }
  BioPtr bio = MemoryBio(pem);
  auto* u = const_cast<std::optional<std::string>*>(&passphrase);
  PkeyPtr key(PEM_read_bio_PrivateKey(bio.get(), nullptr, PassphraseCallback, u));
  if (key == nullptr) {
    const std::string why = OpensslErrors();
    if (encrypted) {
      return InvalidArgument("cannot decrypt {}: wrong passphrase (from --key-pass-env)?", source);
    }
    if (HasPublicKeyPem(pem) && !HasPrivateKeyPem(pem)) {
      return InvalidArgument(
          "{} holds a public key; --key needs the private key (the "
          "private.pem written by `p2ptrain keygen`)",
          source);
    }
    return InvalidArgument("{} is not a PEM private key: {}", source, why);
  }
  return Adopt(std::move(key), source);
}

Result<std::string> PrivateKey::ToPem(const std::optional<std::string>& passphrase) const {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (bio == nullptr) return OpensslFailure("allocating a buffer");
  if (!passphrase) {
    if (PEM_write_bio_PKCS8PrivateKey(bio.get(), key_.get(), nullptr, nullptr, 0, nullptr,
                                      nullptr) != 1) {
      return OpensslFailure("encoding the private key");
    }
    return BioText(bio.get());
  }
  if (passphrase->empty()) return InvalidArgument("the passphrase is empty");
  // PKCS#8 PBES2: AES-256-CBC under PBKDF2-HMAC-SHA-256 with kPbkdf2Iterations (OpenSSL's PEM
  // default is 2048, far too few for a passphrase).
  const std::unique_ptr<PKCS8_PRIV_KEY_INFO, OpensslDeleter<PKCS8_PRIV_KEY_INFO_free>> info(
      EVP_PKEY2PKCS8(key_.get()));
  if (info == nullptr) return OpensslFailure("encoding the private key");
  const std::unique_ptr<X509_SIG, OpensslDeleter<X509_SIG_free>> encrypted(PKCS8_encrypt_ex(
      -1, EVP_aes_256_cbc(), passphrase->data(), static_cast<int>(passphrase->size()), nullptr, 0,
      kPbkdf2Iterations, info.get(), nullptr, nullptr));
  if (encrypted == nullptr || PEM_write_bio_PKCS8(bio.get(), encrypted.get()) != 1) {
    return OpensslFailure("encrypting the private key");
  }
  return BioText(bio.get());
}

Result<PrivateKey> LoadPrivateKey(const std::string& path,
                                  const std::optional<std::string>& passphrase) {
  P2P_ASSIGN_OR_RETURN(std::string pem, ReadKeyFile(path, "private key"));
  if (HasPublicKeyPem(pem) && !HasPrivateKeyPem(pem)) {
    return InvalidArgument(
        "{} holds a public key; --key needs the private key (the private.pem "
        "written by `p2ptrain keygen`)",
        path);
  }
  // Refused rather than warned about, as ssh does: a key others can read proves nothing.
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0 && (st.st_mode & 077) != 0) {
    OPENSSL_cleanse(pem.data(), pem.size());
    return InvalidArgument(
        "private key {} is accessible by group or others (mode {:04o}); run "
        "`chmod 600 {}`",
        path, st.st_mode & 07777, path);
  }
  auto key = PrivateKey::FromPem(pem, path, passphrase);
  OPENSSL_cleanse(pem.data(), pem.size());
  return key;
}

Result<PublicKey> LoadPublicKey(const std::string& path) {
  P2P_ASSIGN_OR_RETURN(auto keys, LoadPublicKeys(path));
  if (keys.size() != 1) {
    return InvalidArgument("{} holds {} public keys; expected one", path, keys.size());
  }
  return std::move(keys.front());
}

Result<std::vector<PublicKey>> LoadPublicKeys(const std::string& path) {
  P2P_ASSIGN_OR_RETURN(std::string pem, ReadKeyFile(path, "public key"));
  if (HasPrivateKeyPem(pem)) {
    return InvalidArgument(
        "{} contains a private key; trust stores hold public keys only (copy "
        "each peer's public.pem; never share private.pem)",
        path);
  }
  std::vector<PublicKey> keys;
  constexpr std::string_view kBegin = "-----BEGIN ", kDashes = "-----";
  constexpr std::string_view kEnd = "-----END PUBLIC KEY-----";
  for (size_t at = pem.find(kBegin); at != std::string::npos; at = pem.find(kBegin, at)) {
    const size_t label_end = pem.find(kDashes, at + kBegin.size());
    const std::string_view label =
        std::string_view(pem).substr(at + kBegin.size(), label_end - at - kBegin.size());
    if (label != "PUBLIC KEY") {
      return InvalidArgument(
          "{}: unexpected PEM block '{}'; a trust file holds PUBLIC KEY blocks "
          "(the public.pem files of `p2ptrain keygen`)",
          path, label.substr(0, 40));
    }
    const size_t end = pem.find(kEnd, at);
    if (end == std::string::npos) return InvalidArgument("{}: unterminated PEM block", path);
    P2P_ASSIGN_OR_RETURN(
        PublicKey key,
        PublicKey::FromPem(std::string_view(pem).substr(at, end + kEnd.size() - at), path));
    keys.push_back(std::move(key));
    at = end + kEnd.size();
  }
  if (keys.empty()) {
    return InvalidArgument("{} is not a PEM public key (-----BEGIN PUBLIC KEY-----)", path);
  }
  return keys;
}

Status WritePrivateKey(const std::string& path, const PrivateKey& key,
                       const std::optional<std::string>& passphrase) {
  P2P_ASSIGN_OR_RETURN(std::string pem, key.ToPem(passphrase));
  Status s = WriteNewFile(path, pem, 0600);
  OPENSSL_cleanse(pem.data(), pem.size());
  return s;
}

Status WritePublicKey(const std::string& path, const PublicKey& key) {
  return WriteNewFile(path, key.ToPem(), 0644);
}

Result<std::string> PassphraseFromEnv(const std::string& var) {
  const char* value = std::getenv(var.c_str());
  if (value == nullptr) {
    return InvalidArgument("--key-pass-env {}: no environment variable {} is set", var, var);
  }
  if (*value == '\0') {
    return InvalidArgument("--key-pass-env {}: the environment variable {} is empty", var, var);
  }
  return std::string(value);
}

}  // namespace p2p::crypto
