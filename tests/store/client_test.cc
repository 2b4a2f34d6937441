// RedisClient against real, private redis-server processes.
#include "store/client.h"

#include <gtest/gtest.h>

#include <numeric>

#include "store/blob.h"
#include "tests/store/redis_server.h"

namespace p2p::store {
namespace {

using test::RedisServer;

bool Contains(const Status& s, std::string_view words) {
  return s.message().find(words) != std::string::npos;
}

TEST(StoreClientTest, ConnectsWithThePasswordAndRoundTripsABigBlob) {
  RedisServer server;
  ASSERT_TRUE(server.ready()) << server.log();
  Result<RedisClient> client = server.Connect();
  ASSERT_TRUE(client.ok()) << client.status().ToString();
  EXPECT_TRUE(client->Ping().ok());
  std::vector<float> v(1 << 20);
  std::iota(v.begin(), v.end(), -5.5f);
  ASSERT_TRUE(client->SetBlob("p", v).ok());
  Result<std::vector<float>> back = client->GetBlob("p");
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, v);
  Result<Reply> len = client->Command({"STRLEN", "p"});
  ASSERT_TRUE(len.ok());
  EXPECT_EQ(len->integer, static_cast<long long>(kBlobHeaderBytes + v.size() * 4));
}

TEST(StoreClientTest, WrongOrMissingPasswordIsRefusedNamingTheDatabase) {
  RedisServer server;
  ASSERT_TRUE(server.ready()) << server.log();
  ConnectOptions wrong = server.connect_options();
  wrong.password = "not-the-password";
  Result<RedisClient> c = RedisClient::Connect(wrong);
  ASSERT_FALSE(c.ok());
  EXPECT_TRUE(Contains(c.status(), "authentication refused")) << c.status().message();
  EXPECT_TRUE(Contains(c.status(), server.url())) << c.status().message();
  EXPECT_FALSE(Contains(c.status(), "not-the-password"));

  ConnectOptions none = server.connect_options();
  none.password.reset();
  c = RedisClient::Connect(none);
  ASSERT_FALSE(c.ok());
  EXPECT_TRUE(Contains(c.status(), "requires a password")) << c.status().message();
}

TEST(StoreClientTest, UnreachableServerIsUnavailableNamingIt) {
  test::TempDir dir;
  ConnectOptions o;
  o.address = ParseStoreUrl("unix://" + dir.File("no.sock")).value();
  Result<RedisClient> c = RedisClient::Connect(o);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), StatusCode::kUnavailable);
  EXPECT_TRUE(Contains(c.status(), dir.File("no.sock"))) << c.status().message();
  EXPECT_TRUE(Contains(c.status(), "is redis-server running")) << c.status().message();
}

TEST(StoreClientTest, ServerThatGoesAwayGivesUnavailableNotACrash) {
  RedisServer server;
  ASSERT_TRUE(server.ready()) << server.log();
  Result<RedisClient> client = server.Connect();
  ASSERT_TRUE(client.ok()) << client.status().ToString();
  server.Stop();
  Status s = client->Ping();
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), StatusCode::kUnavailable) << s.ToString();
  EXPECT_TRUE(Contains(client->Ping(), "lost earlier"));
}

TEST(StoreClientTest, ModuleCheckNamesTheDatabaseAndTheFix) {
  RedisServer without(RedisServer::Options{.load_module = false});
  ASSERT_TRUE(without.ready()) << without.log();
  Result<RedisClient> c = without.Connect();
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  Status s = c->RequireModule();
  ASSERT_FALSE(s.ok());
  EXPECT_TRUE(Contains(s, "module is not loaded")) << s.message();
  EXPECT_TRUE(Contains(s, "--loadmodule")) << s.message();
  EXPECT_TRUE(Contains(s, without.url())) << s.message();

  RedisServer with;
  ASSERT_TRUE(with.ready()) << with.log();
  Result<RedisClient> m = with.Connect();
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_TRUE(m->RequireModule().ok());
}

TEST(StoreClientTest, TcpUrlSelectsTheDatabase) {
  RedisServer server(RedisServer::Options{.tcp = true});
  ASSERT_TRUE(server.ready()) << server.log();
  ConnectOptions o3 = server.connect_options();
  o3.address.db = 3;
  Result<RedisClient> db3 = RedisClient::Connect(o3);
  ASSERT_TRUE(db3.ok()) << db3.status().ToString();
  ASSERT_TRUE(db3->SetBlob("k", std::vector<float>{1.0f}).ok());
  Result<RedisClient> db0 = server.Connect();
  ASSERT_TRUE(db0.ok());
  Result<std::vector<float>> missing = db0->GetBlob("k");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_TRUE(Contains(missing.status(), "no key 'k'"));
  EXPECT_EQ(db3->GetBlob("k").value(), std::vector<float>{1.0f});
}

TEST(StoreClientTest, NonBlobValuesAndErrorRepliesAreErrorsNamingTheKey) {
  RedisServer server;
  ASSERT_TRUE(server.ready()) << server.log();
  RedisClient c = std::move(server.Connect().value());
  ASSERT_TRUE(c.Command({"SET", "text", "hello world"}).ok());
  Result<std::vector<float>> bad = c.GetBlob("text");
  ASSERT_FALSE(bad.ok());
  EXPECT_TRUE(Contains(bad.status(), "key 'text'")) << bad.status().message();
  EXPECT_TRUE(Contains(bad.status(), "not a p2ptrain blob")) << bad.status().message();
  ASSERT_TRUE(c.Command({"RPUSH", "list", "x"}).ok());
  Result<std::vector<float>> wrongtype = c.GetBlob("list");
  ASSERT_FALSE(wrongtype.ok());
  EXPECT_TRUE(Contains(wrongtype.status(), "WRONGTYPE")) << wrongtype.status().message();
  EXPECT_TRUE(c.Ping().ok());  // an error reply leaves the connection usable
}

}  // namespace
}  // namespace p2p::store
