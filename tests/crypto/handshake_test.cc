// The join handshake as a pure state machine: messages are moved by hand, so every attack is
// exact and nothing depends on timing.
#include "crypto/handshake.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <deque>

#include "tests/crypto/test_keys.h"

namespace p2p::crypto {
namespace {

using ::testing::HasSubstr;
using testing::TestKey;
using testing::TrustFirst;

struct Message {
  enum Kind { kJoin, kWelcome } kind;
  int from, to;  // to = -1: broadcast
  Bytes body;
};

// W handshakes of one run, rank r holding TestKey(key_of[r]), and the messages in flight.
class HandshakeRun {
 public:
  HandshakeRun(int size, const TrustStore& trust, std::vector<int> key_of = {},
               std::string run_id = "test-run")
      : trust_(trust) {
    if (key_of.empty()) {
      for (int r = 0; r < size; ++r) key_of.push_back(r);
    }
    for (int r = 0; r < size; ++r) {
      auto hs = JoinHandshake::Create({run_id, size, r, &TestKey(key_of[r]), &trust_});
      EXPECT_TRUE(hs.ok()) << hs.status().ToString();
      peers_.push_back(std::move(*hs));
      queue_.push_back({Message::kJoin, r, -1, peers_.back().JoinMessage()});
    }
  }

  JoinHandshake& peer(int r) { return peers_[r]; }

  // Delivers everything in flight (and what it provokes) in FIFO order; returns the refusals
  // each rank counted, by reason.
  std::map<int, std::map<std::string, int>> Deliver() {
    std::map<int, std::map<std::string, int>> refused;
    while (!queue_.empty()) {
      Message m = std::move(queue_.front());
      queue_.pop_front();
      for (int r = 0; r < static_cast<int>(peers_.size()); ++r) {
        if (r == m.from || (m.to != -1 && m.to != r)) continue;
        auto step = m.kind == Message::kJoin ? peers_[r].OnJoin(m.from, m.body)
                                             : peers_[r].OnWelcome(m.from, m.body);
        if (step.refusal) ++refused[r][step.refusal->reason];
        if (step.reply) queue_.push_back({Message::kWelcome, r, m.from, std::move(*step.reply)});
        if (m.kind == Message::kWelcome && !step.refusal) delivered_.push_back(m);
      }
    }
    return refused;
  }

  void Inject(Message m) { queue_.push_back(std::move(m)); }
  // Accepted WELCOMEs (the proofs), for replay attacks.
  const std::vector<Message>& delivered() const { return delivered_; }

 private:
  const TrustStore& trust_;
  std::vector<JoinHandshake> peers_;
  std::deque<Message> queue_;
  std::vector<Message> delivered_;
};

// Directional keys match: what a sends to b is what b receives from a.
void ExpectPairKeys(JoinHandshake& a, int rank_a, JoinHandshake& b, int rank_b) {
  const PairKeys* ab = a.keys(rank_b);
  const PairKeys* ba = b.keys(rank_a);
  ASSERT_NE(ab, nullptr);
  ASSERT_NE(ba, nullptr);
  EXPECT_TRUE(ConstantTimeEqual(ab->send_header.span(), ba->recv_header.span()));
  EXPECT_TRUE(ConstantTimeEqual(ab->send_body.span(), ba->recv_body.span()));
  EXPECT_TRUE(ConstantTimeEqual(ab->recv_header.span(), ba->send_header.span()));
  EXPECT_TRUE(ConstantTimeEqual(ab->recv_body.span(), ba->send_body.span()));
  EXPECT_FALSE(ConstantTimeEqual(ab->send_header.span(), ab->recv_header.span()))
      << "directions must differ";
  EXPECT_FALSE(ConstantTimeEqual(ab->send_header.span(), ab->send_body.span()));
  EXPECT_EQ(ab->peer_key, TestKey(rank_b).fingerprint());
}

TEST(HandshakeTest, EveryPairProvesItselfAndAgreesOnDirectionalKeys) {
  const TrustStore trust = TrustFirst(3);
  HandshakeRun run(3, trust);
  const auto refused = run.Deliver();
  EXPECT_TRUE(refused.empty());
  for (int r = 0; r < 3; ++r) {
    EXPECT_TRUE(run.peer(r).complete()) << "rank " << r << ": " << run.peer(r).MissingReport();
  }
  ExpectPairKeys(run.peer(0), 0, run.peer(1), 1);
  ExpectPairKeys(run.peer(0), 0, run.peer(2), 2);
  ExpectPairKeys(run.peer(1), 1, run.peer(2), 2);
  // Different pairs, different keys.
  EXPECT_FALSE(ConstantTimeEqual(run.peer(0).keys(1)->send_body.span(),
                                 run.peer(0).keys(2)->send_body.span()));
}

TEST(HandshakeTest, AnUntrustedKeyIsRefusedAndToldWhy) {
  const TrustStore trust = TrustFirst(2);  // TestKey(2) is not in it
  HandshakeRun run(3, trust);
  const auto refused = run.Deliver();
  // Ranks 0 and 1 refuse rank 2's JOIN; rank 2 (which trusts nobody else's key either, as its
  // store is the same) refuses theirs, and each side counts the other's REFUSAL.
  EXPECT_EQ(refused.at(0).at("untrusted_key"), 1);
  EXPECT_EQ(refused.at(1).at("untrusted_key"), 1);
  EXPECT_EQ(refused.at(2).at("join_refused"), 2);
  EXPECT_TRUE(run.peer(0).keys(1) != nullptr);
  EXPECT_EQ(run.peer(0).keys(2), nullptr);
  EXPECT_FALSE(run.peer(0).complete());
  EXPECT_EQ(run.peer(0).missing(), std::vector<int>{2});
  EXPECT_THAT(run.peer(0).MissingReport(),
              HasSubstr("rank 2: refused here: rank 2: key " + TestKey(2).fingerprint().ToString() +
                        " is not in the trust store"));
  EXPECT_THAT(run.peer(2).MissingReport(), HasSubstr("it refused us"));
  EXPECT_THAT(run.peer(2).MissingReport(), HasSubstr("is not in the trust store"));
}

TEST(HandshakeTest, ManifestRefusesATrustedKeyOnAnotherRank) {
  TrustStore trust = TrustFirst(3);
  trust.BindRank(0, TestKey(0).fingerprint());
  trust.BindRank(1, TestKey(1).fingerprint());
  trust.BindRank(2, TestKey(2).fingerprint());
  HandshakeRun run(3, trust, /*key_of=*/{0, 2, 1});  // ranks 1 and 2 swapped their keys
  const auto refused = run.Deliver();
  EXPECT_EQ(refused.at(0).at("wrong_rank"), 2);
  EXPECT_FALSE(run.peer(0).complete());
  EXPECT_THAT(run.peer(0).MissingReport(), HasSubstr("the manifest binds rank 1 to"));
}

TEST(HandshakeTest, AStolenPublicKeyWithoutItsPrivateKeyIsRefused) {
  const TrustStore trust = TrustFirst(3);
  // The attacker claims rank 1 with rank 1's (public, trusted) key, but holds only key 3.
  auto victim = JoinHandshake::Create({"test-run", 2, 0, &TestKey(0), &trust});
  ASSERT_TRUE(victim.ok());
  TrustStore attacker_trust = trust;
  attacker_trust.Add(TestKey(3).public_key());
  auto attacker = JoinHandshake::Create({"test-run", 2, 1, &TestKey(3), &attacker_trust});
  ASSERT_TRUE(attacker.ok());
  // Rewrite the attacker's JOIN to carry rank 1's public key instead of its own.
  Bytes join = attacker->JoinMessage();
  const Bytes& own = TestKey(3).public_key().der();
  const Bytes& stolen = TestKey(1).public_key().der();
  ASSERT_EQ(own.size(), stolen.size());
  auto at = std::search(join.begin(), join.end(), own.begin(), own.end());
  ASSERT_NE(at, join.end());
  std::copy(stolen.begin(), stolen.end(), at);
  auto step = victim->OnJoin(1, join);
  ASSERT_FALSE(step.refusal) << step.refusal->detail;  // the key is trusted: answered
  ASSERT_TRUE(step.reply);
  // The share in that reply is encrypted to key 1: useless to the attacker. Its own PROOF for the
  // victim's JOIN, with key 3's signature over key 1's identity.
  auto attacker_proof = attacker->OnJoin(0, victim->JoinMessage()).reply;
  ASSERT_TRUE(attacker_proof);
  // Swap the advertised key inside the proof to the stolen one, keeping key 3's signature.
  Bytes proof = *attacker_proof;
  auto pos = std::search(proof.begin(), proof.end(), own.begin(), own.end());
  ASSERT_NE(pos, proof.end());
  std::copy(stolen.begin(), stolen.end(), pos);
  const auto verdict = victim->OnWelcome(1, proof);
  ASSERT_TRUE(verdict.refusal);
  EXPECT_EQ(verdict.refusal->reason, "bad_signature");
  EXPECT_THAT(verdict.refusal->detail, HasSubstr("stolen public key"));
  EXPECT_EQ(victim->keys(1), nullptr);
  EXPECT_FALSE(victim->complete());
}

TEST(HandshakeTest, ARecordedHandshakeReplayedIntoANewRunIsRefused) {
  const TrustStore trust = TrustFirst(2);
  HandshakeRun first(2, trust);
  first.Deliver();
  ASSERT_TRUE(first.peer(0).complete());
  // Rank 1's proof to rank 0, recorded on the wire.
  const auto it = std::find_if(first.delivered().begin(), first.delivered().end(),
                               [](const Message& m) { return m.from == 1 && m.to == 0; });
  ASSERT_NE(it, first.delivered().end());
  const Message recorded = *it;

  // A new run: rank 0 restarts with a fresh nonce; the attacker replays rank 1's old proof.
  auto fresh = JoinHandshake::Create({"test-run", 2, 0, &TestKey(0), &trust});
  ASSERT_TRUE(fresh.ok());
  const auto step = fresh->OnWelcome(1, recorded.body);
  ASSERT_TRUE(step.refusal);
  EXPECT_EQ(step.refusal->reason, "replayed_handshake");
  EXPECT_EQ(fresh->keys(1), nullptr);

  // Replaying a JOIN within a run: its nonce was already seen.
  HandshakeRun second(2, trust);
  const Bytes join1 = second.peer(1).JoinMessage();
  second.Deliver();
  ASSERT_TRUE(second.peer(0).complete());
  auto again = JoinHandshake::Create({"test-run", 2, 0, &TestKey(0), &trust});
  ASSERT_TRUE(again.ok());
  ASSERT_FALSE(again->OnJoin(1, join1).refusal);
  const auto replayed = again->OnJoin(1, join1);
  ASSERT_TRUE(replayed.refusal);
  EXPECT_EQ(replayed.refusal->reason, "reused_nonce");
}

TEST(HandshakeTest, ATakenRankOrKeyIsRefused) {
  const TrustStore trust = TrustFirst(4);
  HandshakeRun run(3, trust);
  run.Deliver();
  ASSERT_TRUE(run.peer(0).complete());
  // Another process with a trusted key asks for rank 1, already held.
  auto latecomer = JoinHandshake::Create({"test-run", 3, 1, &TestKey(3), &trust});
  ASSERT_TRUE(latecomer.ok());
  const auto step = run.peer(0).OnJoin(1, latecomer->JoinMessage());
  ASSERT_TRUE(step.refusal);
  EXPECT_EQ(step.refusal->reason, "rank_taken");
  EXPECT_THAT(step.refusal->detail, HasSubstr(TestKey(1).fingerprint().Short()));

  // One key, two ranks: rank 2 presents rank 1's key (a copied private key).
  HandshakeRun copied(3, trust, /*key_of=*/{0, 1, 1});
  const auto refused = copied.Deliver();
  EXPECT_GE(refused.at(0).at("key_in_use"), 1);
  EXPECT_FALSE(copied.peer(0).complete());
}

TEST(HandshakeTest, MalformedAndMisdirectedMessagesAreRefused) {
  const TrustStore trust = TrustFirst(2);
  auto hs = JoinHandshake::Create({"test-run", 2, 0, &TestKey(0), &trust});
  ASSERT_TRUE(hs.ok());
  EXPECT_EQ(hs->OnJoin(1, {}).refusal->reason, "malformed_handshake");
  Bytes join = hs->JoinMessage();
  join.pop_back();
  EXPECT_EQ(hs->OnJoin(1, join).refusal->reason, "malformed_handshake");
  // A JOIN of rank 1 in another run.
  auto other = JoinHandshake::Create({"other-run", 2, 1, &TestKey(1), &trust});
  ASSERT_TRUE(other.ok());
  EXPECT_EQ(hs->OnJoin(1, other->JoinMessage()).refusal->reason, "malformed_handshake");
  // A JOIN whose body says rank 1 arriving in an envelope from rank 0's slot... claimed rank 2.
  auto one = JoinHandshake::Create({"test-run", 2, 1, &TestKey(1), &trust});
  ASSERT_TRUE(one.ok());
  EXPECT_EQ(hs->OnJoin(2, one->JoinMessage()).refusal->reason, "malformed_handshake");
  EXPECT_EQ(hs->OnWelcome(1, Bytes(40, std::byte{1})).refusal->reason, "malformed_handshake");
}

}  // namespace
}  // namespace p2p::crypto
