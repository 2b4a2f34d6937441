// Identities: sign/verify and OAEP round trips, fingerprints, key files and their failure modes,
// trust stores and manifests.
#include "crypto/keys.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <openssl/pem.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "crypto/mac.h"
#include "crypto/rsa.h"
#include "crypto/trust_store.h"
#include "tests/crypto/test_keys.h"
#include "tests/support/subprocess.h"

namespace p2p::crypto {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using testing::TestKey;

Bytes Text(std::string_view s) {
  const ByteSpan b = AsBytes(s);
  return Bytes(b.begin(), b.end());
}

void WriteText(const std::string& path, const std::string& text, mode_t mode = 0600) {
  std::ofstream(path) << text;
  ASSERT_EQ(::chmod(path.c_str(), mode), 0);
}

TEST(RsaTest, PssSignatureVerifiesOnlyForTheSameKeyAndMessage) {
  const Bytes head = Text("header"), body(4096, std::byte{7});
  const ByteSpan pieces[] = {head, body};
  auto sig = SignPss(TestKey(0), pieces);
  ASSERT_TRUE(sig.ok()) << sig.status().ToString();
  EXPECT_EQ(sig->size(), 256u);  // RSA-2048
  EXPECT_TRUE(VerifyPss(TestKey(0).public_key(), pieces, *sig));
  // The pieces are one message: a different split of the same bytes verifies too.
  Bytes joined = head;
  joined.insert(joined.end(), body.begin(), body.end());
  const ByteSpan whole[] = {joined};
  EXPECT_TRUE(VerifyPss(TestKey(0).public_key(), whole, *sig));
  EXPECT_FALSE(VerifyPss(TestKey(1).public_key(), pieces, *sig)) << "another key";
  Bytes altered = body;
  altered[100] ^= std::byte{1};
  const ByteSpan altered_pieces[] = {head, altered};
  EXPECT_FALSE(VerifyPss(TestKey(0).public_key(), altered_pieces, *sig)) << "another message";
  Bytes bad_sig = *sig;
  bad_sig[0] ^= std::byte{1};
  EXPECT_FALSE(VerifyPss(TestKey(0).public_key(), pieces, bad_sig));
  EXPECT_FALSE(VerifyPss(TestKey(0).public_key(), pieces, {})) << "empty signature";
  // PSS is randomised: two signatures of one message differ, both valid.
  auto again = SignPss(TestKey(0), pieces);
  ASSERT_TRUE(again.ok());
  EXPECT_NE(*again, *sig);
  EXPECT_TRUE(VerifyPss(TestKey(0).public_key(), pieces, *again));
}

TEST(RsaTest, OaepRoundTripOnlyWithTheRightPrivateKey) {
  const Bytes secret = Text("a 32-byte session key share.....");
  auto ct = EncryptOaep(TestKey(0).public_key(), secret);
  ASSERT_TRUE(ct.ok()) << ct.status().ToString();
  EXPECT_EQ(ct->size(), 256u);
  auto pt = DecryptOaep(TestKey(0), *ct);
  ASSERT_TRUE(pt.ok()) << pt.status().ToString();
  EXPECT_TRUE(ConstantTimeEqual(pt->span(), secret));
  EXPECT_FALSE(DecryptOaep(TestKey(1), *ct).ok()) << "someone else's private key";
  Bytes altered = *ct;
  altered[10] ^= std::byte{1};
  const auto bad = DecryptOaep(TestKey(0), altered);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  // Randomised padding: encrypting twice gives different ciphertexts.
  EXPECT_NE(*EncryptOaep(TestKey(0).public_key(), secret), *ct);
}

TEST(MacTest, KnownAnswers) {
  // FIPS 180-2 "abc".
  const Bytes abc = Text("abc");
  const ByteSpan pieces[] = {abc};
  EXPECT_EQ(ToHex(Sha256(pieces)),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  // RFC 4231 test case 2, with the key zero-padded to our 32-byte key size (HMAC pads keys with
  // zeros to the block size, so the result is the RFC's).
  SecretBytes key(kMacKeyBytes);
  std::memcpy(key.data(), "Jefe", 4);
  const Bytes msg = Text("what do ya want for nothing?");
  const ByteSpan msg_pieces[] = {msg};
  EXPECT_EQ(ToHex(HmacSha256(key, msg_pieces)),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

TEST(MacTest, Poly1305TagDependsOnKeyNonceAndEveryByte) {
  auto key = RandomSecret(kMacKeyBytes);
  auto other = RandomSecret(kMacKeyBytes);
  ASSERT_TRUE(key.ok() && other.ok());
  Bytes data(100000, std::byte{3});
  const PolyTag tag = Poly1305Tag(*key, 7, data);
  EXPECT_EQ(Poly1305Tag(*key, 7, data), tag) << "deterministic";
  EXPECT_NE(Poly1305Tag(*key, 8, data), tag) << "nonce";
  EXPECT_NE(Poly1305Tag(*other, 7, data), tag) << "key";
  data[99999] ^= std::byte{0x80};
  EXPECT_NE(Poly1305Tag(*key, 7, data), tag) << "last byte";
  EXPECT_NE(Poly1305Tag(*key, 7, {}), tag) << "empty";
}

TEST(FingerprintTest, IsSha256OfTheDerPublicKeyAndParsesBack) {
  const PublicKey& pub = TestKey(0).public_key();
  const ByteSpan der[] = {pub.der()};
  EXPECT_EQ(pub.fingerprint().bytes, Sha256(der));
  const std::string text = pub.fingerprint().ToString();
  EXPECT_THAT(text, ::testing::MatchesRegex("SHA256:[0-9a-f]{64}"));
  auto parsed = Fingerprint::Parse(text);
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(*parsed, pub.fingerprint());
  auto bare = Fingerprint::Parse(text.substr(7));
  ASSERT_TRUE(bare.ok());
  EXPECT_EQ(*bare, pub.fingerprint());
  EXPECT_FALSE(Fingerprint::Parse("SHA256:abc").ok());
  EXPECT_FALSE(Fingerprint::Parse(std::string(64, 'g')).ok());
  EXPECT_NE(TestKey(1).fingerprint(), pub.fingerprint());
  // The DER round trip gives the same identity.
  auto again = PublicKey::FromDer(pub.der());
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->fingerprint(), pub.fingerprint());
}

class KeyFileTest : public ::testing::Test {
 protected:
  test::TempDir dir_;
};

TEST_F(KeyFileTest, WrittenKeysLoadBackWithTheRightModes) {
  const std::string priv = dir_.File("private.pem"), pub = dir_.File("public.pem");
  ASSERT_TRUE(WritePrivateKey(priv, TestKey(0), std::nullopt).ok());
  ASSERT_TRUE(WritePublicKey(pub, TestKey(0).public_key()).ok());
  struct stat st {};
  ASSERT_EQ(::stat(priv.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_EQ(::stat(pub.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0644u);
  auto loaded = LoadPrivateKey(priv, std::nullopt);
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  EXPECT_EQ(loaded->fingerprint(), TestKey(0).fingerprint());
  auto loaded_pub = LoadPublicKey(pub);
  ASSERT_TRUE(loaded_pub.ok()) << loaded_pub.status().ToString();
  EXPECT_EQ(loaded_pub->fingerprint(), TestKey(0).fingerprint());
  // Never overwritten.
  const Status again = WritePrivateKey(priv, TestKey(1), std::nullopt);
  EXPECT_EQ(again.code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(again.message(), HasSubstr("already exists"));
  EXPECT_EQ(LoadPrivateKey(priv, std::nullopt)->fingerprint(), TestKey(0).fingerprint());
}

TEST_F(KeyFileTest, EncryptedKeyNeedsTheRightPassphraseAndNeverPrintsIt) {
  const std::string priv = dir_.File("private.pem");
  const std::string pass = "correct horse battery staple";
  ASSERT_TRUE(WritePrivateKey(priv, TestKey(0), pass).ok());
  EXPECT_THAT(test::ReadFile(priv), HasSubstr("BEGIN ENCRYPTED PRIVATE KEY"));
  auto ok = LoadPrivateKey(priv, pass);
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  EXPECT_EQ(ok->fingerprint(), TestKey(0).fingerprint());
  const auto none = LoadPrivateKey(priv, std::nullopt);
  EXPECT_EQ(none.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(none.status().message(), HasSubstr("--key-pass-env"));
  const auto wrong = LoadPrivateKey(priv, std::string("Tr0ub4dor&3"));
  EXPECT_EQ(wrong.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(wrong.status().message(), HasSubstr("wrong passphrase"));
  EXPECT_THAT(wrong.status().message(), Not(HasSubstr("Tr0ub4dor")));
}

TEST_F(KeyFileTest, BadKeyFilesGiveClearErrors) {
  struct Case {
    std::string name, expected;
    StatusCode code;
  };
  // Too permissive: refused, with the fix.
  const std::string loose = dir_.File("loose.pem");
  ASSERT_TRUE(WritePrivateKey(loose, TestKey(0), std::nullopt).ok());
  ASSERT_EQ(::chmod(loose.c_str(), 0644), 0);
  // Malformed PEM; a public key where the private one belongs; a key of the wrong type; RSA-1024.
  WriteText(dir_.File("garbage.pem"), "-----BEGIN PRIVATE KEY-----\nnot base64 at all\n");
  WriteText(dir_.File("public.pem"), TestKey(0).public_key().ToPem());
  PkeyPtr ec(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
  PkeyPtr small(EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", size_t{1024}));
  ASSERT_TRUE(ec && small);
  for (auto& [key, name] : {std::pair{ec.get(), "ec.pem"}, std::pair{small.get(), "small.pem"}}) {
    BioPtr bio(BIO_new(BIO_s_mem()));
    ASSERT_EQ(PEM_write_bio_PKCS8PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr),
              1);
    char* data = nullptr;
    const long len = BIO_get_mem_data(bio.get(), &data);
    WriteText(dir_.File(name), std::string(data, len));
  }
  std::filesystem::create_directory(dir_.File("a-directory"));
  WriteText(dir_.File("plain-file"), "x");
  const std::vector<Case> cases = {
      {"missing.pem", "does not exist (create a key pair with `p2ptrain keygen",
       StatusCode::kNotFound},
      {"loose.pem", "chmod 600", StatusCode::kInvalidArgument},
      {"garbage.pem", "is not a PEM private key", StatusCode::kInvalidArgument},
      {"public.pem", "holds a public key; --key needs the private key",
       StatusCode::kInvalidArgument},
      {"ec.pem", "holds a EC key; p2ptrain identities are RSA", StatusCode::kInvalidArgument},
      {"small.pem", "1024 bits; p2ptrain accepts 2048..8192", StatusCode::kInvalidArgument},
      {"a-directory", "is not a regular file", StatusCode::kInvalidArgument},
      {"plain-file/key.pem", "Not a directory", StatusCode::kIoError},
  };
  for (const Case& c : cases) {
    const auto key = LoadPrivateKey(dir_.File(c.name), std::nullopt);
    ASSERT_FALSE(key.ok()) << c.name;
    EXPECT_EQ(key.status().code(), c.code) << c.name << ": " << key.status().ToString();
    EXPECT_THAT(key.status().message(), HasSubstr(c.expected)) << c.name;
    EXPECT_THAT(key.status().message(), HasSubstr(dir_.path())) << "names the file";
  }
  if (::geteuid() != 0) {  // root reads any file; for everyone else mode 0000 means unreadable
    const std::string locked = dir_.File("locked.pem");
    ASSERT_TRUE(WritePrivateKey(locked, TestKey(0), std::nullopt).ok());
    ASSERT_EQ(::chmod(locked.c_str(), 0), 0);
    const auto key = LoadPrivateKey(locked, std::nullopt);
    EXPECT_EQ(key.status().code(), StatusCode::kIoError) << key.status().ToString();
  }
}

TEST(PassphraseTest, ComesFromTheNamedVariableOnly) {
  ::setenv("P2P_TEST_PASS", "s3cret", 1);
  auto pass = PassphraseFromEnv("P2P_TEST_PASS");
  ASSERT_TRUE(pass.ok());
  EXPECT_EQ(*pass, "s3cret");
  ::setenv("P2P_TEST_PASS", "", 1);
  EXPECT_THAT(PassphraseFromEnv("P2P_TEST_PASS").status().message(), HasSubstr("is empty"));
  ::unsetenv("P2P_TEST_PASS");
  EXPECT_THAT(PassphraseFromEnv("P2P_TEST_PASS").status().message(), HasSubstr("is set"));
}

TEST_F(KeyFileTest, TrustStoreFromDirectoryOrFile) {
  const std::string trust = dir_.File("trust");
  std::filesystem::create_directory(trust);
  WriteText(trust + "/rank0.pem", TestKey(0).public_key().ToPem(), 0644);
  WriteText(trust + "/rank1.pem", TestKey(1).public_key().ToPem(), 0644);
  WriteText(trust + "/.hidden", "ignored");
  auto store = TrustStore::Load(trust);
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  EXPECT_EQ(store->size(), 2u);
  EXPECT_NE(store->Find(TestKey(1).fingerprint()), nullptr);
  EXPECT_EQ(store->Find(TestKey(2).fingerprint()), nullptr);
  EXPECT_EQ(store->ReasonNot(5, TestKey(2).fingerprint()), "untrusted_key");
  EXPECT_EQ(store->ReasonNot(5, TestKey(1).fingerprint()), "") << "no manifest: any rank";

  // One file with both keys.
  const std::string bundle = dir_.File("bundle.pem");
  WriteText(bundle, TestKey(0).public_key().ToPem() + TestKey(1).public_key().ToPem(), 0644);
  auto from_file = TrustStore::Load(bundle);
  ASSERT_TRUE(from_file.ok()) << from_file.status().ToString();
  EXPECT_EQ(from_file->size(), 2u);

  // A private key in a trust directory is an error naming the file, not skipped.
  ASSERT_TRUE(WritePrivateKey(trust + "/oops.pem", TestKey(2), std::nullopt).ok());
  const auto leaked = TrustStore::Load(trust);
  ASSERT_FALSE(leaked.ok());
  EXPECT_THAT(leaked.status().message(), HasSubstr("oops.pem contains a private key"));
  std::filesystem::remove(trust + "/oops.pem");
  WriteText(trust + "/notes.txt", "hello");
  EXPECT_THAT(TrustStore::Load(trust).status().message(), HasSubstr("notes.txt is not a PEM"));

  EXPECT_EQ(TrustStore::Load(dir_.File("nope")).status().code(), StatusCode::kNotFound);
  std::filesystem::create_directory(dir_.File("empty"));
  EXPECT_THAT(TrustStore::Load(dir_.File("empty")).status().message(), HasSubstr("no public keys"));
}

TEST_F(KeyFileTest, ManifestBindsEveryRankToOneTrustedKey) {
  TrustStore store = testing::TrustFirst(3);
  const std::string fp0 = TestKey(0).fingerprint().ToString();
  const std::string fp1 = TestKey(1).fingerprint().ToString();
  const std::string path = dir_.File("manifest");
  WriteText(path, "# rank key\n0 " + fp0 + "\n1 " + fp1.substr(7) + "  # bare hex works\n\n");
  ASSERT_TRUE(store.LoadManifest(path, 2).ok());
  EXPECT_EQ(store.ReasonNot(0, TestKey(0).fingerprint()), "");
  EXPECT_EQ(store.ReasonNot(1, TestKey(0).fingerprint()), "wrong_rank");
  EXPECT_THAT(store.WhyNot(1, TestKey(0).fingerprint()), HasSubstr("binds rank 1 to"));
  EXPECT_EQ(store.ReasonNot(0, TestKey(3).fingerprint()), "untrusted_key");

  struct Case {
    std::string text, expected;
  };
  const std::vector<Case> bad = {
      {"0 " + fp0 + "\n", "binds no key to rank 1"},
      {"0 " + fp0 + "\n1 " + fp0 + "\n", "already bound to rank 0"},
      {"0 " + fp0 + "\n0 " + fp1 + "\n", "rank 0 is bound twice"},
      {"0 " + fp0 + "\n2 " + fp1 + "\n", "rank '2' is not in 0..1"},
      {"0 " + fp0 + "\n1 " + TestKey(3).fingerprint().ToString() + "\n", "not in the trust store"},
      {"0 " + fp0 + " extra\n", "expected '<rank> <fingerprint>'"},
      {"x " + fp0 + "\n", "rank 'x'"},
      {"0 SHA256:beef\n", "not a key fingerprint"},
  };
  for (const Case& c : bad) {
    WriteText(path, c.text);
    const Status s = store.LoadManifest(path, 2);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << c.text;
    EXPECT_THAT(s.message(), HasSubstr(c.expected)) << c.text;
  }
}

}  // namespace
}  // namespace p2p::crypto
