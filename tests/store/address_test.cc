#include "store/address.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <fstream>

#include "tests/support/subprocess.h"

namespace p2p::store {
namespace {

TEST(StoreAddressTest, ParsesTcpUrls) {
  Result<StoreAddress> a = ParseStoreUrl("redis://alice:s3cret@10.0.0.5:6400/3");
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  EXPECT_EQ(a->kind, StoreAddress::Kind::kTcp);
  EXPECT_EQ(a->host, "10.0.0.5");
  EXPECT_EQ(a->port, 6400);
  EXPECT_EQ(a->db, 3);
  EXPECT_EQ(a->user, "alice");
  EXPECT_EQ(a->password, "s3cret");
  EXPECT_EQ(a->Describe(), "redis://alice@10.0.0.5:6400/3");  // never the password

  Result<StoreAddress> plain = ParseStoreUrl("redis://localhost");
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(plain->port, 6379);
  EXPECT_EQ(plain->db, 0);
  EXPECT_FALSE(plain->password.has_value());
}

TEST(StoreAddressTest, ParsesUnixUrls) {
  Result<StoreAddress> a = ParseStoreUrl("unix:///run/p2p/redis.sock?db=2");
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  EXPECT_EQ(a->kind, StoreAddress::Kind::kUnix);
  EXPECT_EQ(a->path, "/run/p2p/redis.sock");
  EXPECT_EQ(a->db, 2);
  EXPECT_EQ(a->Describe(), "unix:///run/p2p/redis.sock?db=2");
}

TEST(StoreAddressTest, RejectsBadUrlsNamingThePartWithoutEchoingThePassword) {
  const std::pair<const char*, const char*> cases[] = {
      {"http://x", "expected redis://"}, {"redis://:pw@", "no host"},
      {"redis://h:0/0", "port '0'"},     {"redis://h:99999", "port '99999'"},
      {"redis://h:6379/x", "db 'x'"},    {"unix://relative.sock", "absolute socket path"},
      {"unix:///s.sock?foo=1", "db=N"},
  };
  for (auto [url, words] : cases) {
    Result<StoreAddress> a = ParseStoreUrl(url);
    ASSERT_FALSE(a.ok()) << url;
    EXPECT_NE(a.status().message().find(words), std::string::npos) << a.status().message();
  }
  Result<StoreAddress> secret = ParseStoreUrl("redis://u:topsecret@h:notaport/0");
  ASSERT_FALSE(secret.ok());
  EXPECT_EQ(secret.status().message().find("topsecret"), std::string::npos)
      << secret.status().message();
}

TEST(StoreAddressTest, PasswordComesFromFileThenEnvThenUrl) {
  test::TempDir dir;
  const StoreAddress a = ParseStoreUrl("redis://u:fromurl@h/0").value();
  unsetenv("P2P_TEST_REDIS_PW");
  EXPECT_EQ(ResolvePassword(a, "", "P2P_TEST_REDIS_PW").value(), "fromurl");
  setenv("P2P_TEST_REDIS_PW", "fromenv", 1);
  EXPECT_EQ(ResolvePassword(a, "", "P2P_TEST_REDIS_PW").value(), "fromenv");
  std::ofstream(dir.File("pw")) << "fromfile\n";
  EXPECT_EQ(ResolvePassword(a, dir.File("pw"), "P2P_TEST_REDIS_PW").value(), "fromfile");
  unsetenv("P2P_TEST_REDIS_PW");

  Result<std::optional<std::string>> missing = ResolvePassword(a, dir.File("nope"));
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find(dir.File("nope")), std::string::npos);
  std::ofstream(dir.File("empty")) << "\n";
  EXPECT_FALSE(ResolvePassword(a, dir.File("empty")).ok());
}

}  // namespace
}  // namespace p2p::store
