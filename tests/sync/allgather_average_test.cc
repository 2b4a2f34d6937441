#include "sync/allgather_average.h"

#include <gtest/gtest.h>

#include <limits>

#include "broker/inproc_transport.h"
#include "sync/agreement.h"
#include "sync/gradient_body.h"
#include "tests/sync/run_group.h"

namespace p2p::sync {
namespace {

using namespace std::chrono_literals;

// Rank r's gradient: values that differ per rank and per coordinate.
std::vector<float> GradientOf(int rank, size_t p) {
  std::vector<float> g(p);
  for (size_t i = 0; i < p; ++i) g[i] = 0.001f * float(i % 97) - 0.3f * float(rank) + 1.0f / 3;
  return g;
}

class AllgatherTest : public ::testing::TestWithParam<int> {};

TEST_P(AllgatherTest, EveryRankGetsTheExactSampleWeightedAverage) {
  const int w = GetParam();
  constexpr size_t kP = 1000;
  std::vector<std::vector<float>> out(w);
  const auto statuses = RunGroup(w, [&](int r, Mailbox& mailbox) -> Status {
    AllgatherAverage strategy(mailbox, {.peer_timeout = 10s});
    for (uint64_t step = 0; step < 3; ++step) {  // several rounds: no cross-talk between them
      out[r] = GradientOf(r, kP);
      P2P_RETURN_IF_ERROR(strategy.Average({1, step}, 10 + r, out[r]));
    }
    return Status::Ok();
  });
  for (int r = 0; r < w; ++r) ASSERT_TRUE(statuses[r].ok()) << statuses[r].ToString();

  double total = 0;
  for (int r = 0; r < w; ++r) total += 10 + r;
  double max_diff = 0;
  for (size_t i = 0; i < kP; ++i) {
    double expected = 0;
    for (int r = 0; r < w; ++r) expected += (10 + r) / total * GradientOf(r, kP)[i];
    max_diff = std::max(max_diff, std::abs(expected - out[0][i]));
  }
  EXPECT_LT(max_diff, 1e-6) << "max |float average - double reference|";
  for (int r = 1; r < w; ++r) EXPECT_EQ(out[r], out[0]) << "rank " << r << " differs bitwise";
}

INSTANTIATE_TEST_SUITE_P(Sizes, AllgatherTest, ::testing::Range(1, 9));

// With a codec every peer must still end with the same bits: the rank-order, sample-weighted sum
// of the DECODED gradients, its own included. The reference replays every rank's encoder (same
// seeds, same error feedback) and sums in the same order.
class AllgatherCodecTest : public ::testing::TestWithParam<std::string> {};

TEST_P(AllgatherCodecTest, EveryRankAveragesTheDecodedGradientsBitwiseEqually) {
  constexpr int kW = 3;
  constexpr size_t kP = 1000;
  constexpr uint64_t kSeed = 17;
  auto config = codecs::ParseCodecSpec(GetParam());
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  // Rank 2 has no samples in step 1 (an exhausted shard): weight 0, residual kept.
  auto samples = [](int r, uint64_t step) -> uint32_t { return r == 2 && step == 1 ? 0 : 10 + r; };
  auto gradient = [&](int r, uint64_t step) {
    auto g = GradientOf(r, kP);
    for (float& v : g) v = samples(r, step) == 0 ? 0.0f : v * float(1 + step);
    return g;
  };
  std::vector<std::vector<float>> out(kW);
  std::vector<SyncTimings> timings(kW);
  const auto statuses = RunGroup(kW, [&](int r, Mailbox& mailbox) -> Status {
    AllgatherAverage strategy(mailbox, {.peer_timeout = 10s, .codec = *config, .seed = kSeed});
    for (uint64_t step = 0; step < 3; ++step) {
      out[r] = gradient(r, step);
      P2P_RETURN_IF_ERROR(strategy.Average({1, step}, samples(r, step), out[r]));
    }
    timings[r] = strategy.timings();
    return Status::Ok();
  });
  for (int r = 0; r < kW; ++r) ASSERT_TRUE(statuses[r].ok()) << statuses[r].ToString();
  for (int r = 1; r < kW; ++r) EXPECT_EQ(out[r], out[0]) << "rank " << r << " differs bitwise";

  auto made = codecs::MakeCodec(*config);
  ASSERT_TRUE(made.ok());
  std::shared_ptr<const codecs::Codec> codec(std::move(*made));
  std::vector<codecs::GradientEncoder> encoders(kW, codecs::GradientEncoder(codec));
  std::vector<float> expected(kP);
  for (uint64_t step = 0; step < 3; ++step) {
    double total = 0;
    for (int r = 0; r < kW; ++r) total += samples(r, step);
    std::fill(expected.begin(), expected.end(), 0.0f);
    for (int r = 0; r < kW; ++r) {
      std::vector<std::byte> payload;
      ASSERT_TRUE(encoders[r]
                      .Encode(gradient(r, step), codecs::RoundSeed(kSeed, r, 1, step),
                              samples(r, step) > 0, payload)
                      .ok());
      std::vector<float> decoded(kP);
      ASSERT_TRUE(encoders[r].DecodeOwn(payload, decoded).ok());
      const float w = static_cast<float>(double(samples(r, step)) / total);
      if (w == 0.0f) continue;
      for (size_t i = 0; i < kP; ++i) expected[i] += w * decoded[i];
    }
  }
  EXPECT_EQ(out[0], expected) << GetParam();
  // Without loss the result is the exact weighted average of the last round's gradients.
  double max_diff = 0;
  const double total = 10 + 11 + 12;
  for (size_t i = 0; i < kP; ++i) {
    double exact = 0;
    for (int r = 0; r < kW; ++r) exact += (10 + r) / total * gradient(r, 2)[i];
    max_diff = std::max(max_diff, std::abs(exact - out[0][i]));
  }
  if (codec->lossless()) {
    EXPECT_LT(max_diff, 1e-6);
  }
  EXPECT_EQ(timings[0].rounds, 3u);
  EXPECT_EQ(timings[0].raw_bytes, 3 * 4 * kP);
  EXPECT_GT(timings[0].encoded_bytes, 0u);
  if (GetParam() == "none") {
    EXPECT_EQ(timings[0].encoded_bytes, 3 * (4 + 4 * kP));
  } else if (GetParam() == "qsgd") {
    EXPECT_LT(timings[0].encoded_bytes, timings[0].raw_bytes / 3);
  }
}

INSTANTIATE_TEST_SUITE_P(Codecs, AllgatherCodecTest,
                         ::testing::Values("none", "fp16", "qsgd", "qsgd:bits=4,bucket=128",
                                           "qsgd-elias", "qsgd-elias:code=omega", "qsgd-linf",
                                           "uint8", "uint8:mode=meanstd", "topk", "topk:ratio=0.1",
                                           "topk:ef=0", "topk:ratio=0.05,momentum=0.9",
                                           "qsgd:ef=1"),
                         [](const auto& info) {
                           std::string name = info.param;
                           for (char& c : name) {
                             if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
                           }
                           return name;
                         });

TEST(AllgatherTest, AGradientEncodedWithAnotherCodecIsRefused) {
  const auto statuses = RunGroup(2, [](int r, Mailbox& mailbox) -> Status {
    codecs::CodecConfig codec{"qsgd", {{"bits", 8}, {"bucket", 0}, {"ef", 0}}};
    if (r == 1) codec.params["bits"] = 4;  // same codec, other parameters
    AllgatherAverage strategy(mailbox, {.peer_timeout = 5s, .codec = codec});
    std::vector<float> g(100, 0.5f);
    return strategy.Average({1, 0}, 1, g);
  });
  for (int r = 0; r < 2; ++r) {
    EXPECT_EQ(statuses[r].code(), StatusCode::kInvalidArgument) << statuses[r].ToString();
    EXPECT_NE(statuses[r].message().find(fmt::format("gradient from rank {}", 1 - r)),
              std::string::npos)
        << statuses[r].message();
  }
  EXPECT_NE(statuses[0].message().find("encoded as 'qsgd:bits=4,bucket=0,ef=0' but this run uses "
                                       "'qsgd:bits=8,bucket=0,ef=0'"),
            std::string::npos)
      << statuses[0].message();
}

TEST(AllgatherTest, NonFiniteGradientIsAClearErrorBeforeAnythingIsSent) {
  auto group = broker::MakeInProcGroup(2);
  Mailbox m0(*group[0], {.run_id = "r"});
  AllgatherAverage s0(m0, {.peer_timeout = 10s});
  std::vector<float> g(10, 1.0f);
  g[7] = std::numeric_limits<float>::quiet_NaN();
  const Status s = s0.Average({2, 5}, 1, g);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("epoch 2 step 5"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("value 7 of 10"), std::string::npos) << s.message();
  EXPECT_EQ(group[0]->Stats().messages_sent, 0u);
}

TEST(AllgatherTest, MakeStrategyRejectsAnInvalidCodec) {
  auto group = broker::MakeInProcGroup(1);
  Mailbox m(*group[0], {.run_id = "r"});
  auto s = MakeStrategy("allgather-average", m, {.codec = {"qsgd", {{"bits", 40}}}});
  EXPECT_EQ(s.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.status().message().find("bits=40"), std::string::npos) << s.status().message();
}

TEST(AllgatherTest, MissingPeerTimesOutNamingIt) {
  auto group = broker::MakeInProcGroup(3);
  Mailbox m0(*group[0], {.run_id = "r"});
  Mailbox m1(*group[1], {.run_id = "r"});
  AllgatherAverage s1(m1, {.peer_timeout = 50ms});
  std::vector<float> g(4, 1.0f);
  // Rank 0 sends its gradient; rank 2 never does.
  AllgatherAverage s0(m0, {.peer_timeout = 1ms});
  (void)s0.Average({1, 0}, 1, g);
  Status s = s1.Average({1, 0}, 1, g);
  ASSERT_EQ(s.code(), StatusCode::kTimeout);
  EXPECT_NE(s.message().find("rank(s) 2"), std::string::npos) << s.message();
}

TEST(AllgatherTest, WrongLengthGradientFailsTheRoundWithoutApplyingIt) {
  const auto statuses = RunGroup(2, [](int r, Mailbox& mailbox) -> Status {
    AllgatherAverage strategy(mailbox, {.peer_timeout = 5s});
    std::vector<float> g(r == 0 ? 4 : 5, 1.0f);
    return strategy.Average({1, 0}, 1, g);
  });
  EXPECT_EQ(statuses[0].code(), StatusCode::kInvalidArgument);
  EXPECT_NE(statuses[0].message().find("rank 1"), std::string::npos) << statuses[0].message();
}

TEST(MailboxTest, StaleDuplicateForeignAndMalformedMessagesAreCounted) {
  auto group = broker::MakeInProcGroup(2);
  Mailbox receiver(*group[1], {.run_id = "run"});
  Mailbox sender(*group[0], {.run_id = "run"});
  Mailbox stranger(*group[0], {.run_id = "other-run"});
  broker::Envelope e;
  e.type = broker::MessageType::kGradient;
  e.epoch = 1;
  auto send_step = [&](Mailbox& from, uint64_t step) {
    e.step = step;
    ASSERT_TRUE(from.Send(e).ok());
  };
  auto collect_step = [&](uint64_t step) {
    auto got = receiver.Collect(broker::MessageType::kGradient, {1, step}, {0},
                                broker::DeadlineIn(1s), "round");
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    EXPECT_EQ(got->at(0).step, step);
  };
  send_step(sender, 1);    // a future round: parked
  send_step(sender, 1);    // its duplicate, while parked
  send_step(stranger, 0);  // wrong run
  const std::byte junk[] = {std::byte{0xc1}, std::byte{0x00}};
  ASSERT_TRUE(group[0]->Send(1, junk).ok());  // not msgpack
  send_step(sender, 0);
  collect_step(0);       // reads all five messages above
  send_step(sender, 0);  // round (1, 0) is complete now: stale
  collect_step(1);       // served from the parked message
  send_step(sender, 2);
  collect_step(2);  // reads the stale message first
  const auto& by = receiver.rejects().by_reason;
  EXPECT_EQ(by.at("duplicate"), 1u);
  EXPECT_EQ(by.at("wrong_run"), 1u);
  EXPECT_EQ(by.at("malformed"), 1u);
  EXPECT_EQ(by.at("stale"), 1u);
  EXPECT_EQ(receiver.rejects().total(), 4u);
}

TEST(AgreementTest, MismatchedStartIsAnErrorShowingBothValues) {
  const auto statuses = RunGroup(3, [](int r, Mailbox& mailbox) -> Status {
    return AgreeOnStart(mailbox, "model=mlp", r == 2 ? "bbbb" : "aaaa", 10, broker::DeadlineIn(5s))
        .status();
  });
  EXPECT_EQ(statuses[0].code(), StatusCode::kInvalidArgument);
  EXPECT_NE(statuses[0].message().find("rank 2"), std::string::npos) << statuses[0].message();
  EXPECT_NE(statuses[0].message().find("bbbb"), std::string::npos);
  EXPECT_EQ(statuses[2].code(), StatusCode::kInvalidArgument);
}

TEST(AgreementTest, MatchingPeersAgree) {
  const auto statuses = RunGroup(4, [](int r, Mailbox& mailbox) -> Status {
    P2P_ASSIGN_OR_RETURN(auto steps,
                         AgreeOnStart(mailbox, "cfg", "h0", 100 + r, broker::DeadlineIn(5s)));
    for (int i = 0; i < 4; ++i) {
      if (steps[i] != uint64_t(100 + i)) return InvalidArgument("rank {} steps {}", i, steps[i]);
    }
    return AgreeOnEnd(mailbox, 3, "h1", broker::DeadlineIn(5s));
  });
  for (const auto& s : statuses) EXPECT_TRUE(s.ok()) << s.ToString();
}

// An omniscient attacker (ALIE, IPM: peer/attack.h) reads the honest gradients of the round
// before it sends. Two attackers (ranks 1 and 3 of 5) must each see exactly the three honest
// gradients, in rank order, every round; the others must all average the attackers' crafted
// vectors into the same bits; and nobody may deadlock waiting for the other attacker.
TEST(AllgatherOmniscientAttackTest, AttackersSeeTheHonestGradientsFirstAndEveryPeerAgrees) {
  constexpr int kW = 5;
  constexpr size_t kP = 257;
  const std::vector<int> attackers = {1, 3};
  std::vector<std::vector<float>> out(kW);
  std::vector<std::vector<std::vector<float>>> seen(kW);  // per attacker: the last honest inputs
  const auto statuses = RunGroup(kW, [&](int r, Mailbox& mailbox) -> Status {
    StrategyOptions options{.peer_timeout = 10s};
    if (r == 1 || r == 3) {
      options.omniscient_attack = StrategyOptions::OmniscientAttack{
          .attackers = attackers,
          .corrupt = [&seen, r](const std::vector<std::span<const float>>& honest,
                                std::span<float> grad) {
            seen[r].clear();
            for (auto h : honest) seen[r].emplace_back(h.begin(), h.end());
            // -1 x the sum of the honest gradients: easy to recompute below.
            for (size_t i = 0; i < grad.size(); ++i) {
              float sum = 0;
              for (auto h : honest) sum += h[i];
              grad[i] = -sum;
            }
          }};
    }
    AllgatherAverage strategy(mailbox, options);
    for (uint64_t step = 0; step < 3; ++step) {
      out[r] = GradientOf(r, kP);
      P2P_RETURN_IF_ERROR(strategy.Average({1, step}, 10, out[r]));
    }
    return Status::Ok();
  });
  for (int r = 0; r < kW; ++r) ASSERT_TRUE(statuses[r].ok()) << statuses[r].ToString();
  for (int a : attackers) {
    ASSERT_EQ(seen[a].size(), 3u) << "attacker " << a;
    EXPECT_EQ(seen[a][0], GradientOf(0, kP));
    EXPECT_EQ(seen[a][1], GradientOf(2, kP));
    EXPECT_EQ(seen[a][2], GradientOf(4, kP));
  }
  for (int r = 1; r < kW; ++r) EXPECT_EQ(out[r], out[0]) << "rank " << r << " differs bitwise";
  // Equal weights: (g0 + g2 + g4 + 2 x -(g0 + g2 + g4)) / 5 = -(g0 + g2 + g4) / 5.
  for (size_t i = 0; i < kP; ++i) {
    const double honest = GradientOf(0, kP)[i] + GradientOf(2, kP)[i] + GradientOf(4, kP)[i];
    EXPECT_NEAR(out[0][i], -honest / 5, 1e-5) << i;
  }
}

TEST(AllgatherOmniscientAttackTest, OnlyAllgatherAverageCanCarryIt) {
  auto group = broker::MakeInProcGroup(2);
  Mailbox mailbox(*group[0], {.run_id = "t"});
  StrategyOptions options;
  options.omniscient_attack =
      StrategyOptions::OmniscientAttack{.attackers = {0}, .corrupt = [](auto&, auto) {}};
  auto made = MakeStrategy("reduce-scatter-average", mailbox, options);
  ASSERT_FALSE(made.ok());
  EXPECT_NE(made.status().message().find("only --strategy allgather-average"), std::string::npos)
      << made.status().message();
  EXPECT_TRUE(MakeStrategy("allgather-average", mailbox, options).ok());
}

}  // namespace
}  // namespace p2p::sync
