#include "broker/amqp_url.h"

#include <gtest/gtest.h>

namespace p2p::broker {
namespace {

AmqpUrl Parse(std::string_view text) {
  Result<AmqpUrl> url = ParseAmqpUrl(text);
  EXPECT_TRUE(url.ok()) << text << ": " << url.status().ToString();
  return url.ok() ? url.value() : AmqpUrl{};
}

void ExpectInvalid(std::string_view text, std::string_view needle) {
  Result<AmqpUrl> url = ParseAmqpUrl(text);
  ASSERT_FALSE(url.ok()) << text << " parsed";
  EXPECT_EQ(url.status().code(), StatusCode::kInvalidArgument) << text;
  EXPECT_NE(url.status().message().find(needle), std::string::npos)
      << text << " -> " << url.status().message();
}

TEST(AmqpUrl, FullUrl) {
  AmqpUrl u = Parse("amqp://alice:secret@broker.example:5673/prod");
  EXPECT_FALSE(u.tls);
  EXPECT_EQ(u.user, "alice");
  EXPECT_EQ(u.password, "secret");
  EXPECT_EQ(u.host, "broker.example");
  EXPECT_EQ(u.port, 5673);
  EXPECT_EQ(u.vhost, "prod");
  EXPECT_EQ(u.Endpoint(), "broker.example:5673");
}

TEST(AmqpUrl, Defaults) {
  AmqpUrl u = Parse("amqp://localhost");
  EXPECT_EQ(u.user, "guest");
  EXPECT_EQ(u.password, "guest");
  EXPECT_EQ(u.port, 5672);
  EXPECT_EQ(u.vhost, "/");
  EXPECT_TRUE(u.verify_peer);
  EXPECT_FALSE(u.heartbeat_s.has_value());
  EXPECT_EQ(Parse("amqp://").host, "localhost");
}

TEST(AmqpUrl, AmqpsDefaultsToPort5671AndVerification) {
  AmqpUrl u = Parse("amqps://mq.example/");
  EXPECT_TRUE(u.tls);
  EXPECT_EQ(u.port, 5671);
  EXPECT_TRUE(u.verify_peer);
  EXPECT_EQ(Parse("AMQPS://mq.example:1234").port, 1234);
}

TEST(AmqpUrl, PercentDecodesUserAndPassword) {
  AmqpUrl u = Parse("amqp://us%40er:p%3Ass%2F%25w@h/");
  EXPECT_EQ(u.user, "us@er");
  EXPECT_EQ(u.password, "p:ss/%w");
}

TEST(AmqpUrl, PasswordMayContainAtSign) {  // the last '@' ends the user info
  EXPECT_EQ(Parse("amqp://u:p@ss@h").password, "p@ss");
}

TEST(AmqpUrl, VhostSlashForms) {
  EXPECT_EQ(Parse("amqp://h").vhost, "/");
  EXPECT_EQ(Parse("amqp://h/").vhost, "/");
  EXPECT_EQ(Parse("amqp://h/%2F").vhost, "/");
  EXPECT_EQ(Parse("amqp://h/%2f").vhost, "/");
  EXPECT_EQ(Parse("amqp://h/a%2Fb").vhost, "a/b");
  EXPECT_EQ(Parse("amqp://h/vh").vhost, "vh");
  ExpectInvalid("amqp://h/a/b", "%2F");
}

TEST(AmqpUrl, Ipv6Literal) {
  AmqpUrl u = Parse("amqp://[::1]:5680/");
  EXPECT_EQ(u.host, "::1");
  EXPECT_EQ(u.port, 5680);
  EXPECT_EQ(u.Endpoint(), "[::1]:5680");
  EXPECT_EQ(Parse("amqp://[fe80::1]").port, 5672);
  ExpectInvalid("amqp://[::1", "unterminated");
  ExpectInvalid("amqp://[::1]x", "junk");
}

TEST(AmqpUrl, QueryParameters) {
  AmqpUrl u = Parse("amqps://h/?heartbeat=5&cacertfile=%2Ftmp%2Fca.pem&verify=verify_none");
  EXPECT_EQ(u.heartbeat_s, 5);
  EXPECT_EQ(u.ca_file, "/tmp/ca.pem");
  EXPECT_FALSE(u.verify_peer);
  AmqpUrl c = Parse("amqps://h?certfile=c.pem&keyfile=k.pem");
  EXPECT_EQ(c.cert_file, "c.pem");
  EXPECT_EQ(c.key_file, "k.pem");
  EXPECT_EQ(Parse("amqp://h/?heartbeat=0").heartbeat_s, 0);
}

TEST(AmqpUrl, RejectsBadQueries) {
  ExpectInvalid("amqp://h/?cacertfile=ca.pem", "amqps");
  ExpectInvalid("amqps://h/?verify=maybe", "verify_none");
  ExpectInvalid("amqps://h/?verfy=verify_none", "unknown query parameter");
  ExpectInvalid("amqps://h/?certfile=c.pem", "keyfile");
  ExpectInvalid("amqp://h/?heartbeat=-1", "heartbeat");
  ExpectInvalid("amqp://h/?heartbeat", "no '='");
}

TEST(AmqpUrl, RejectsMalformed) {
  ExpectInvalid("http://h/", "amqp://");
  ExpectInvalid("h:5672", "amqp://");
  ExpectInvalid("amqp://h:", "empty port");
  ExpectInvalid("amqp://h:0", "port");
  ExpectInvalid("amqp://h:65536", "port");
  ExpectInvalid("amqp://h:56x", "port");
  ExpectInvalid("amqp://u:p%zz@h", "percent");
  ExpectInvalid("amqp://u:p%4@h", "percent");
  ExpectInvalid("amqp://h/ vh", "spaces");
  ExpectInvalid("amqp://h/#frag", "'#'");
}

TEST(AmqpUrl, RedactedHidesPassword) {
  AmqpUrl u = Parse("amqp://bob:hunter2@h:1/v");
  EXPECT_EQ(u.Redacted(), "amqp://bob:***@h:1/v");
  EXPECT_EQ(u.Redacted().find("hunter2"), std::string::npos);
}

TEST(PercentDecode, Basics) {
  EXPECT_EQ(PercentDecode("a%20b").value(), "a b");
  EXPECT_EQ(PercentDecode("plain+text").value(), "plain+text");  // '+' is not a space here
  EXPECT_FALSE(PercentDecode("%").ok());
  EXPECT_FALSE(PercentDecode("%G0").ok());
}

}  // namespace
}  // namespace p2p::broker
