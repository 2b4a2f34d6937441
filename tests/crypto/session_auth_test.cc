// The authenticated Mailbox: W threads over an in-process transport group join with real keys,
// then exchange envelopes; an attacker with a raw transport (and, as an insider, its own session
// keys) injects forged, tampered, replayed and unsigned copies.
#include "sync/session_auth.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <thread>

#include "broker/inproc_transport.h"
#include "crypto/session_mac.h"
#include "tests/crypto/test_keys.h"

namespace p2p::sync {
namespace {

using namespace std::chrono_literals;
using crypto::testing::TestKey;
using crypto::testing::TrustFirst;
using ::testing::HasSubstr;

broker::Bytes Body(std::string_view s) {
  const auto* p = reinterpret_cast<const std::byte*>(s.data());
  return broker::Bytes(p, p + s.size());
}

std::string Text(const broker::Bytes& b) {
  return std::string(reinterpret_cast<const char*>(b.data()), b.size());
}

// One peer: transport, authenticator and mailbox.
struct Peer {
  Peer(broker::Transport& t, int rank, int size, const crypto::TrustStore& trust, int key)
      : auth(crypto::JoinHandshake::Create({"auth-run", size, rank, &TestKey(key), &trust}).value(),
             rank, size),
        mailbox(t, {.run_id = "auth-run", .authenticator = &auth}) {}
  SessionAuthenticator auth;
  Mailbox mailbox;
};

// Runs `body(rank, peer)` for every rank on its own thread after the join; returns statuses.
template <typename Body>
std::vector<Status> RunJoined(std::vector<std::unique_ptr<broker::InProcTransport>>& group,
                              const crypto::TrustStore& trust, Body body,
                              std::vector<int> key_of = {}) {
  const int w = static_cast<int>(group.size());
  if (key_of.empty()) {
    for (int r = 0; r < w; ++r) key_of.push_back(r);
  }
  std::vector<Status> results(w);
  std::vector<std::thread> threads;
  for (int r = 0; r < w; ++r) {
    threads.emplace_back([&, r] {
      Peer peer(*group[r], r, w, trust, key_of[r]);
      results[r] = JoinRun(peer.mailbox, peer.auth, broker::DeadlineIn(10s));
      if (results[r].ok()) results[r] = body(r, peer);
    });
  }
  for (auto& t : threads) t.join();
  return results;
}

TEST(SessionAuthTest, JoinedPeersExchangeAuthenticatedBroadcastsAndDirectMessages) {
  const auto trust = TrustFirst(3);
  auto group = broker::MakeInProcGroup(3);
  const auto statuses = RunJoined(group, trust, [](int r, Peer& p) -> Status {
    for (uint64_t step = 0; step < 3; ++step) {
      broker::Envelope env;
      env.type = broker::MessageType::kGradient;
      env.step = step;
      env.body = Body(fmt::format("gradient of rank {} step {}", r, step));
      P2P_RETURN_IF_ERROR(p.mailbox.Send(env));
      std::vector<int> others;
      for (int o = 0; o < 3; ++o) {
        if (o != r) others.push_back(o);
      }
      P2P_ASSIGN_OR_RETURN(auto got, p.mailbox.Collect(broker::MessageType::kGradient, {0, step},
                                                       others, broker::DeadlineIn(10s), "test"));
      for (int o : others) {
        if (got.at(o).body != Body(fmt::format("gradient of rank {} step {}", o, step))) {
          return Internal("rank {} got a wrong body from {}", r, o);
        }
      }
    }
    // Point to point: one slot, for the receiver only.
    broker::Envelope direct;
    direct.type = broker::MessageType::kBarrier;
    direct.body = Body("to the next rank");
    P2P_RETURN_IF_ERROR(p.mailbox.Send(direct, (r + 1) % 3));
    P2P_ASSIGN_OR_RETURN(auto got,
                         p.mailbox.Collect(broker::MessageType::kBarrier, {0, 0}, {(r + 2) % 3},
                                           broker::DeadlineIn(10s), "direct"));
    if (p.mailbox.rejects().total() != 0) return Internal("rank {} rejected something", r);
    return Status::Ok();
  });
  for (int r = 0; r < 3; ++r) EXPECT_TRUE(statuses[r].ok()) << statuses[r].ToString();
}

TEST(SessionAuthTest, JoinTimesOutNamingTheUntrustedRankAndWhy) {
  const auto trust = TrustFirst(2);  // rank 2's key 2 is not trusted
  auto group = broker::MakeInProcGroup(3);
  std::vector<Status> results(3);
  std::vector<std::thread> threads;
  for (int r = 0; r < 3; ++r) {
    threads.emplace_back([&, r] {
      Peer peer(*group[r], r, 3, trust, r);
      // Long enough for rank 2's JOIN to arrive on a loaded CI machine (it must be judged).
      results[r] = JoinRun(peer.mailbox, peer.auth, broker::DeadlineIn(2s));
      if (r == 0) {
        const auto& rejects = peer.mailbox.rejects().by_reason;
        const auto it = rejects.find("untrusted_key");
        EXPECT_TRUE(it != rejects.end() && it->second == 1u) << "rank 2's JOIN was not judged";
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(results[0].code(), StatusCode::kTimeout);
  EXPECT_THAT(results[0].message(), HasSubstr("rank(s) 2 did not prove their identity"));
  EXPECT_THAT(results[0].message(), HasSubstr("is not in the trust store"));
  EXPECT_THAT(results[2].message(), HasSubstr("rank(s) 0, 1 did not prove"));
  EXPECT_THAT(results[2].message(), HasSubstr("it refused us"));
}

// Rank 2 is an insider gone bad: it joined legitimately (a trusted key), then uses its raw
// transport to send rank 1 copies of rank 0's messages, altered, replayed, unsigned, and forged
// with its own session keys. Rank 1 must apply exactly rank 0's genuine messages.
TEST(SessionAuthTest, ForgedTamperedReplayedAndUnsignedCopiesAreRejectedByReason) {
  const auto trust = TrustFirst(3);
  auto group = broker::MakeInProcGroup(3);
  broker::InProcTransport& raw2 = *group[2];
  std::map<std::string, uint64_t> rank1_rejects;
  std::vector<std::string> rank1_bodies;
  const auto statuses = RunJoined(group, trust, [&](int r, Peer& p) -> Status {
    constexpr int kSteps = 3;
    if (r == 0) {
      // Only once rank 2 has finished joining and reads its raw transport: before, its mailbox
      // would take our gradients in (a race seen on a loaded CI machine).
      P2P_RETURN_IF_ERROR(p.mailbox
                              .Collect(broker::MessageType::kBarrier, {0, 1}, {2},
                                       broker::DeadlineIn(10s), "rank 2 ready")
                              .status());
      for (uint64_t step = 0; step < kSteps; ++step) {
        broker::Envelope env;
        env.type = broker::MessageType::kGradient;
        env.step = step;
        env.body = Body(fmt::format("genuine {}", step));
        P2P_RETURN_IF_ERROR(p.mailbox.Send(env));
      }
    } else if (r == 2) {
      broker::Envelope ready;
      ready.type = broker::MessageType::kBarrier;
      ready.step = 1;
      P2P_RETURN_IF_ERROR(p.mailbox.Send(ready, 0));
      // Rank 0's broadcasts reach rank 2 too: take them off the raw transport, as sent.
      std::vector<broker::Envelope> seen;
      while (seen.size() < kSteps) {
        P2P_ASSIGN_OR_RETURN(auto m, raw2.Receive(broker::DeadlineIn(10s)));
        if (!m) return Timeout("rank 0's gradients never came");
        auto env = broker::DecodeEnvelope(m->payload);
        if (env.ok() && env->type == broker::MessageType::kGradient) seen.push_back(*env);
      }
      auto send = [&](const broker::Envelope& env) {
        return raw2.Send(1, *broker::EncodeEnvelope(env));
      };
      // Replays of steps 0 and 1 (rank 1 gets them after the originals: FIFO per sender).
      P2P_RETURN_IF_ERROR(send(seen[0]));
      P2P_RETURN_IF_ERROR(send(seen[1]));
      // Tampered: genuine header and MAC, one body byte changed.
      broker::Envelope tampered = seen[2];
      tampered.body[0] ^= std::byte{1};
      P2P_RETURN_IF_ERROR(send(tampered));
      // Forged header: the step changed under the genuine MAC.
      broker::Envelope moved = seen[2];
      moved.step = 7;
      P2P_RETURN_IF_ERROR(send(moved));
      // Unsigned.
      broker::Envelope unsigned_env = seen[2];
      unsigned_env.step = 8;
      unsigned_env.signature.clear();
      P2P_RETURN_IF_ERROR(send(unsigned_env));
      // Insider forgery: a valid MAC under rank 2's own keys with rank 1, claiming rank 0.
      broker::Envelope forged = seen[2];
      forged.step = 9;
      forged.receiver = 1;
      forged.seq = 1000;
      forged.body = Body("evil");
      const crypto::Slot slot = crypto::SealSlot(*p.auth.handshake().keys(1), 1000,
                                                 broker::SigningHeader(forged), forged.body);
      forged.signature.assign(slot.begin(), slot.end());
      P2P_RETURN_IF_ERROR(send(forged));
      // A genuine-looking message for a rank that never joined.
      broker::Envelope stranger = seen[2];
      stranger.sender = 5;
      P2P_RETURN_IF_ERROR(send(stranger));
      broker::Envelope done;
      done.type = broker::MessageType::kBarrier;
      return p.mailbox.Send(done, 1);  // through the mailbox: after the injected ones
    } else {
      for (uint64_t step = 0; step < kSteps; ++step) {
        P2P_ASSIGN_OR_RETURN(auto got,
                             p.mailbox.Collect(broker::MessageType::kGradient, {0, step}, {0},
                                               broker::DeadlineIn(10s), "gradients"));
        rank1_bodies.push_back(Text(got.at(0).body));
      }
      P2P_ASSIGN_OR_RETURN(auto done, p.mailbox.Collect(broker::MessageType::kBarrier, {0, 0}, {2},
                                                        broker::DeadlineIn(10s), "done"));
      rank1_rejects = p.mailbox.rejects().by_reason;
    }
    return Status::Ok();
  });
  for (int r = 0; r < 3; ++r) ASSERT_TRUE(statuses[r].ok()) << statuses[r].ToString();
  EXPECT_EQ(rank1_bodies, (std::vector<std::string>{"genuine 0", "genuine 1", "genuine 2"}));
  const std::map<std::string, uint64_t> expected = {{"replay", 2},
                                                    {"tampered_body", 1},
                                                    {"bad_mac", 2},
                                                    {"unsigned", 1},
                                                    {"unexpected_sender", 1}};
  EXPECT_EQ(rank1_rejects, expected);
}

// A fake authenticator that can only sign for one receiver: the Mailbox falls back to one copy
// per rank, and every copy is addressed.
class OneSlotAuthenticator final : public Authenticator {
 public:
  Status Sign(broker::Envelope& env) override {
    env.signature = Body("ok");
    return Status::Ok();
  }
  Verdict Verify(const broker::Envelope& env) override {
    if (env.signature != Body("ok")) return {Action::kReject, "unsigned", "no"};
    if (env.receiver == broker::kAllRanks) return {Action::kReject, "broadcast", "unexpected"};
    return {};
  }
  int MaxBroadcastReceivers() const override { return 1; }
};

TEST(SessionAuthTest, MailboxSendsOneCopyPerRankWhenABroadcastCannotBeSigned) {
  auto group = broker::MakeInProcGroup(3);
  std::vector<OneSlotAuthenticator> auths(3);
  std::vector<std::unique_ptr<Mailbox>> boxes;
  for (int r = 0; r < 3; ++r) {
    boxes.push_back(std::make_unique<Mailbox>(
        *group[r], Mailbox::Options{.run_id = "r", .authenticator = &auths[r]}));
  }
  broker::Envelope env;
  env.type = broker::MessageType::kBarrier;
  ASSERT_TRUE(boxes[0]->Send(env).ok());
  for (int r : {1, 2}) {
    auto got = boxes[r]->Collect(broker::MessageType::kBarrier, {0, 0}, {0}, broker::DeadlineIn(5s),
                                 "copy");
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    EXPECT_EQ(got->at(0).receiver, r);
    EXPECT_EQ(boxes[r]->rejects().total(), 0u);
  }
}

TEST(SessionAuthTest, AnInsecurePeerDropsHandshakesWithAClearReason) {
  auto group = broker::MakeInProcGroup(2);
  const auto trust = TrustFirst(2);
  Peer secure(*group[0], 0, 2, trust, 0);
  Mailbox insecure(*group[1], {.run_id = "auth-run"});
  // The secure peer's JOIN reaches a peer without authenticator.
  EXPECT_EQ(JoinRun(secure.mailbox, secure.auth, broker::DeadlineIn(1ms)).code(),
            StatusCode::kTimeout);
  EXPECT_EQ(insecure.Pump(broker::DeadlineIn(5s)).code(), StatusCode::kOk);
  EXPECT_EQ(insecure.rejects().by_reason.at("unexpected_handshake"), 1u);
  // And the insecure peer's unsigned messages reach the secure one as "unsigned".
  broker::Envelope env;
  env.type = broker::MessageType::kParamsHash;
  ASSERT_TRUE(insecure.Send(env).ok());
  EXPECT_EQ(secure.mailbox.Pump(broker::DeadlineIn(5s)).code(), StatusCode::kOk);
  EXPECT_EQ(secure.mailbox.rejects().by_reason.at("unsigned"), 1u);
}

}  // namespace
}  // namespace p2p::sync
