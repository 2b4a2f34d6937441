// The rendezvous registry's bounds, rate limiting, expiry, eviction and signed-registration rules,
// driven with explicit times (no sleeps). The socket-level behaviour is in rendezvous_test.cc,
// real RSA keys in tests/peer/rendezvous_auth_test.cc.
#include "broker/rendezvous_registry.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>

namespace p2p::broker::rendezvous {
namespace {

using std::chrono::seconds;

Request Reg(const std::string& run, int rank, int size, int port) {
  Request r;
  r.run_id = run;
  r.rank = rank;
  r.size = size;
  r.endpoint = fmt::format("tcp://10.0.0.1:{}", port);
  return r;
}

// A stand-in for RSA in these tests: the "signature" is a checksum of the message and the key
// byte, and keys whose first byte is 0xEE are untrusted. Real keys:
// tests/peer/rendezvous_auth_test.cc.
std::byte Checksum(std::span<const std::byte> m) {
  unsigned sum = 0;
  for (size_t i = 0; i < m.size(); ++i) sum = sum * 31 + static_cast<unsigned>(m[i]);
  return std::byte(sum & 0xff);
}

Bytes FakeSign(const Request& r) { return {Checksum(SigningBytes(r)), r.key_id.at(0)}; }

std::string FakeVerify(std::span<const std::byte> key, std::span<const std::byte> message,
                       std::span<const std::byte> sig) {
  if (key.empty() || key[0] == std::byte{0xEE}) return "untrusted_key";
  const bool ok = sig.size() == 2 && sig[0] == Checksum(message) && sig[1] == key[0];
  return ok ? "" : "bad_signature";
}

Request Signed(Request r, uint8_t key, int64_t unix_ms) {
  r.key_id = Bytes(kKeyIdBytes, std::byte{key});
  r.unix_ms = static_cast<uint64_t>(unix_ms);
  r.signature = FakeSign(r);
  return r;
}

class RegistryTest : public ::testing::Test {
 protected:
  Now At(double s) const {
    return {start_ + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s)),
            1'800'000'000'000 + static_cast<int64_t>(s * 1000)};
  }
  Registry::Outcome Send(Registry& reg, const Request& r, const std::string& source = "10.1.1.1",
                         double t = 0, const std::string& client = "c") {
    return reg.Handle(client, source, r, At(t));
  }
  Clock::time_point start_ = Clock::now();
};

TEST_F(RegistryTest, MemoryFollowsRegistrationsNotTheDeclaredSize) {
  Limits l;
  l.burst = 1000;
  Registry reg(l, nullptr);
  for (int i = 0; i < 200; ++i) {
    auto out = Send(reg, Reg(fmt::format("big-{}", i), 0, 4096, 1000 + i));
    EXPECT_TRUE(out.reason.empty()) << out.message;
  }
  EXPECT_EQ(reg.stats().runs, 200u);
  EXPECT_EQ(reg.stats().registrations, 200u);  // one entry each, not 4096
}

TEST_F(RegistryTest, RateLimitsEachSourceWithATokenBucket) {
  Limits l;
  l.burst = 5;
  l.requests_per_second = 2;
  Registry reg(l, nullptr);
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(Send(reg, Reg("r", i, 10, 1 + i)).reason.empty());
  auto limited = Send(reg, Reg("r", 5, 10, 6));
  EXPECT_EQ(limited.reason, "rate_limited");
  ASSERT_EQ(limited.replies.size(), 1u);
  EXPECT_NE(limited.message.find("10.1.1.1"), std::string::npos) << limited.message;
  // Another address is not affected; the first one gets a token back after 0.5 s.
  EXPECT_TRUE(Send(reg, Reg("r", 5, 10, 6), "10.2.2.2").reason.empty());
  EXPECT_EQ(Send(reg, Reg("r", 6, 10, 7), "10.1.1.1", 0.4).reason, "rate_limited");
  EXPECT_TRUE(Send(reg, Reg("r", 6, 10, 7), "10.1.1.1", 0.9).reason.empty());
  EXPECT_EQ(reg.stats().refused.at("rate_limited"), 2u);
}

TEST_F(RegistryTest, BoundsRegistrationsPerSource) {
  Limits l;
  l.max_per_source = 3;
  Registry reg(l, nullptr);
  for (int i = 0; i < 3; ++i)
    EXPECT_TRUE(Send(reg, Reg(fmt::format("f{}", i), 0, 2, 1)).reason.empty());
  auto refused = Send(reg, Reg("f3", 0, 2, 1));
  EXPECT_EQ(refused.reason, "source_full");
  EXPECT_EQ(reg.stats().runs, 3u);  // the refused registration left no empty run behind
  EXPECT_TRUE(Send(reg, Reg("honest", 0, 2, 1), "10.9.9.9").reason.empty());
}

TEST_F(RegistryTest, AFullServiceEvictsTheHeaviestSourceNotTheNewcomer) {
  Limits l;
  l.max_registrations = 10;
  l.max_per_source = 7;
  Registry reg(l, nullptr);
  // Two flooding addresses fill the service (6 + 4).
  for (int i = 0; i < 6; ++i) Send(reg, Reg(fmt::format("a{}", i), 0, 2, 1), "10.6.6.6", i, "a");
  for (int i = 0; i < 4; ++i)
    Send(reg, Reg(fmt::format("b{}", i), 0, 2, 1), "10.7.7.7", 10 + i, "b");
  ASSERT_EQ(reg.stats().registrations, 10u);
  // The heaviest address cannot evict anyone to make room for itself.
  auto more = Send(reg, Reg("a-more", 0, 2, 1), "10.6.6.6", 15, "a");
  EXPECT_EQ(more.reason, "full") << more.message;
  // An honest run of 2 from a third address: each rank evicts the oldest flood run of the
  // heaviest address, whose waiting client is told.
  auto r0 = Send(reg, Reg("honest", 0, 2, 100), "10.1.1.1", 20, "h0");
  EXPECT_TRUE(r0.reason.empty()) << r0.message;
  ASSERT_EQ(r0.replies.size(), 1u);
  EXPECT_EQ(r0.replies[0].first, "a");
  auto r1 = Send(reg, Reg("honest", 1, 2, 101), "10.1.1.1", 21, "h1");
  EXPECT_TRUE(r1.reason.empty()) << r1.message;
  size_t answered = 0;
  for (const auto& [client, reply] : r1.replies) {
    auto decoded = DecodeReply(reply, 2);
    ASSERT_TRUE(decoded.ok());
    if (client == "h0" || client == "h1") {
      EXPECT_TRUE(decoded->ok);
      ++answered;
    }
  }
  EXPECT_EQ(answered, 2u);
  EXPECT_EQ(reg.stats().evicted, 2u);
  EXPECT_LE(reg.stats().registrations, 10u);
}

TEST_F(RegistryTest, RunsExpireAndFinishedRunsAreForgotten) {
  Limits l;
  l.run_ttl = seconds(60);
  l.complete_ttl = seconds(10);
  Registry reg(l, nullptr);
  Send(reg, Reg("stale", 0, 2, 1));
  Send(reg, Reg("done", 0, 1, 2));
  EXPECT_EQ(reg.stats().completed, 1u);
  reg.Expire(At(11));
  EXPECT_EQ(reg.stats().runs, 1u);  // "done" forgotten, "stale" not yet
  reg.Expire(At(61));
  EXPECT_EQ(reg.stats().runs, 0u);
  EXPECT_EQ(reg.stats().registrations, 0u);
  EXPECT_EQ(reg.stats().expired, 2u);
}

TEST_F(RegistryTest, UnsignedTakenRankIsRefusedButAFinishedRunCanStartAgain) {
  Registry reg(Limits{}, nullptr);
  Send(reg, Reg("x", 0, 2, 1));
  EXPECT_EQ(Send(reg, Reg("x", 0, 2, 666), "10.6.6.6").reason, "rank_taken");
  Send(reg, Reg("x", 1, 2, 2));
  EXPECT_EQ(reg.stats().completed, 1u);
  // The run finished: a registration with new endpoints is a new incarnation.
  EXPECT_TRUE(Send(reg, Reg("x", 0, 2, 3)).reason.empty());
  EXPECT_EQ(reg.stats().registrations, 1u);
}

TEST_F(RegistryTest, AResentRegistrationDoesNotTakeTheAnswerFromTheOriginalClient) {
  Registry reg(Limits{}, nullptr);
  Send(reg, Reg("x", 0, 2, 1), "10.1.1.1", 0, "h0");
  EXPECT_TRUE(Send(reg, Reg("x", 0, 2, 1), "10.6.6.6", 0, "evil").replies.empty());
  auto done = Send(reg, Reg("x", 1, 2, 2), "10.1.1.2", 0, "h1");
  std::vector<std::string> answered;
  for (const auto& [client, reply] : done.replies) answered.push_back(client);
  std::sort(answered.begin(), answered.end());
  EXPECT_EQ(answered, (std::vector<std::string>{"evil", "h0", "h1"}));
}

TEST_F(RegistryTest, SignedModeRefusesUnsignedUntrustedForgedAndOldRegistrations) {
  Registry reg(Limits{}, FakeVerify);
  const int64_t now = At(0).unix_ms;
  EXPECT_EQ(Send(reg, Reg("s", 0, 2, 1)).reason, "unsigned");
  EXPECT_EQ(Send(reg, Signed(Reg("s", 0, 2, 1), 0xEE, now)).reason, "untrusted_key");
  Request forged = Signed(Reg("s", 0, 2, 1), 0x01, now);
  forged.endpoint = "tcp://10.6.6.6:1";  // signed for another endpoint
  EXPECT_EQ(Send(reg, forged).reason, "bad_signature");
  EXPECT_EQ(Send(reg, Signed(Reg("s", 0, 2, 1), 0x01, now - 301'000)).reason, "stale_signature");
  EXPECT_EQ(Send(reg, Signed(Reg("s", 0, 2, 1), 0x01, now + 301'000)).reason, "stale_signature");
  EXPECT_EQ(reg.stats().registrations, 0u);
}

TEST_F(RegistryTest, SignedRankCanOnlyBeRetakenByItsKeyWithANewerSignature) {
  Registry reg(Limits{}, FakeVerify);
  const int64_t now = At(0).unix_ms;
  ASSERT_TRUE(Send(reg, Signed(Reg("s", 0, 2, 1), 0x01, now), "10.1.1.1", 0, "h0").reason.empty());
  // Hijack attempts: another trusted key, the same key's older signature, unsigned.
  auto other = Send(reg, Signed(Reg("s", 0, 2, 666), 0x02, now + 5), "10.6.6.6", 0, "evil");
  EXPECT_EQ(other.reason, "rank_taken");
  EXPECT_EQ(Send(reg, Signed(Reg("s", 0, 2, 666), 0x01, now - 5), "10.6.6.6").reason,
            "stale_signature");
  EXPECT_EQ(Send(reg, Reg("s", 0, 2, 666), "10.6.6.6").reason, "unsigned");
  // One key, one rank.
  EXPECT_EQ(Send(reg, Signed(Reg("s", 1, 2, 2), 0x01, now), "10.1.1.1").reason, "key_in_use");
  // The holder restarts on a new port: its newer signature replaces the entry; the old waiting
  // client is told its registration is void.
  auto restart = Send(reg, Signed(Reg("s", 0, 2, 7), 0x01, now + 10), "10.1.1.1", 1, "h0b");
  EXPECT_TRUE(restart.reason.empty()) << restart.message;
  ASSERT_EQ(restart.replies.size(), 1u);
  EXPECT_EQ(restart.replies[0].first, "h0");
  auto done = Send(reg, Signed(Reg("s", 1, 2, 2), 0x02, now), "10.1.1.2", 2, "h1");
  ASSERT_EQ(done.replies.size(), 2u);
  auto list = DecodeReply(done.replies[0].second, 2);
  ASSERT_TRUE(list.ok() && list->ok);
  EXPECT_EQ(list->endpoints[0], "tcp://10.0.0.1:7");
  EXPECT_EQ(reg.stats().registrations, 2u);
}

TEST_F(RegistryTest, MalformedRequestsAreRefusedAndCounted) {
  Registry reg(Limits{}, nullptr);
  auto out = reg.Handle("c", "10.6.6.6", Result<Request>(InvalidArgument("bad")), At(0));
  EXPECT_EQ(out.reason, "malformed");
  EXPECT_EQ(out.replies.size(), 1u);
  EXPECT_EQ(reg.stats().refused.at("malformed"), 1u);
}

TEST(RendezvousWireTest, SignedRequestRoundTripsAndHalfSignaturesAreRejected) {
  Request r = Signed(Reg("w", 1, 3, 9), 0x01, 123);
  auto back = DecodeRequest(EncodeRequest(r), 16);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->key_id, r.key_id);
  EXPECT_EQ(back->unix_ms, 123u);
  EXPECT_EQ(back->signature, r.signature);
  EXPECT_EQ(SigningBytes(*back), SigningBytes(r));
  Request bad_key = r;
  bad_key.key_id.resize(5);
  EXPECT_FALSE(DecodeRequest(EncodeRequest(bad_key), 16).ok());
  Request unsigned_r = Reg("w", 1, 3, 9);
  auto plain = DecodeRequest(EncodeRequest(unsigned_r), 16);
  ASSERT_TRUE(plain.ok());
  EXPECT_FALSE(plain->is_signed());
}

}  // namespace
}  // namespace p2p::broker::rendezvous
