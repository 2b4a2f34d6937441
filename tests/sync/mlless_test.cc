// mlless (sync/mlless.h): MLLess's significance filter over real ZeroMQ sockets (4 peers) and
// the RabbitMQ at $P2P_AMQP_URL. Peers run a small deterministic "training" loop (parameters
// updated with the combined update each round), so the filter sees real, changing parameters;
// every peer must end with bitwise the same parameters, nothing published may be lost, and
// malformed updates must be refused before anything is applied.
#include "sync/mlless.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <thread>

#include "common/hash.h"
#include "sync/comparative_strategies.h"
#include "sync/mlless_body.h"
#include "sync/strategy.h"
#include "tests/sync/run_group.h"
#include "tests/sync/transport_group.h"

namespace p2p::sync {
namespace {

using namespace std::chrono_literals;

constexpr size_t kP = 2053;
constexpr float kLr = 0.05f;

std::vector<float> InitialParams() {
  std::vector<float> w(kP);
  for (size_t i = 0; i < kP; ++i) w[i] = i % 11 == 0 ? 0.0f : 0.1f * std::sin(float(i));
  return w;
}

// A gradient that depends on the rank, the round and the current parameters, with values of
// very different sizes so that some coordinates pass the filter and some accumulate.
std::vector<float> GradientOf(int rank, uint64_t step, std::span<const float> w) {
  std::vector<float> g(w.size());
  for (size_t i = 0; i < w.size(); ++i) {
    const float scale = i % 5 == 0 ? 1e-2f : (i % 5 < 3 ? 1e-5f : 1e-7f);
    g[i] = scale * (std::cos(float(i * (rank + 2) + step)) + 0.5f * w[i]);
  }
  return g;
}

// Rank 1 has no samples in step 2.
uint32_t SamplesOf(int rank, uint64_t step) { return rank == 1 && step == 2 ? 0 : 32; }

struct PeerResult {
  std::vector<float> params;
  std::vector<std::vector<float>> updates;  // per round, the combined update applied
  std::vector<float> gradient_sum;          // the sum of this rank's gradients with samples
  std::vector<float> accumulator;           // what is still unpublished at the end
  SyncTimings timings;
};

// `rounds` rounds of mlless with significance `v` on W ranks connected over `kind`.
std::vector<PeerResult> Train(const std::string& kind, int w, double v, uint64_t rounds) {
  const std::string run_id = broker::amqp_test::UniqueRunId("mlless-" + kind);
  auto transports = test::ConnectedTransports(kind, w, run_id);
  EXPECT_TRUE(transports.ok()) << transports.status().ToString();
  if (!transports.ok()) return {};
  std::vector<PeerResult> out(w);
  std::vector<Status> statuses(w);
  std::vector<std::thread> threads;
  for (int r = 0; r < w; ++r) {
    threads.emplace_back([&, r] {
      statuses[r] = [&]() -> Status {
        PeerResult& me = out[r];
        me.params = InitialParams();
        me.gradient_sum.assign(kP, 0.0f);
        Mailbox mailbox(*(*transports)[r], {.run_id = run_id});
        P2P_ASSIGN_OR_RETURN(
            auto strategy,
            MakeStrategy("mlless", mailbox,
                         {.peer_timeout = 60s, .significance = v, .parameters = [&me] {
                            return std::span<const float>(me.params);
                          }}));
        for (uint64_t step = 0; step < rounds; ++step) {
          std::vector<float> g = GradientOf(r, step, me.params);
          const uint32_t samples = SamplesOf(r, step);
          if (samples > 0) {
            for (size_t i = 0; i < kP; ++i) me.gradient_sum[i] += g[i];
          }
          P2P_RETURN_IF_ERROR(strategy->Average({1, step}, samples, g));
          for (size_t i = 0; i < kP; ++i) me.params[i] -= kLr * g[i];
          me.updates.push_back(std::move(g));
        }
        auto state = strategy->SaveState();
        if (state.size() != 2) return Internal("rank {} saved {} buffers", r, state.size());
        me.accumulator = state[0];
        me.timings = strategy->timings();
        if (mailbox.rejects().total() != 0) {
          return Internal("rank {} dropped {} messages", r, mailbox.rejects().total());
        }
        return Status::Ok();
      }();
    });
  }
  for (auto& t : threads) t.join();
  for (int r = 0; r < w; ++r) EXPECT_TRUE(statuses[r].ok()) << statuses[r].ToString();
  return out;
}

void ExpectSameParams(const std::vector<PeerResult>& peers, const std::string& what) {
  ASSERT_FALSE(peers.empty()) << what;
  const std::string hash = HashFloats(peers[0].params);
  for (size_t r = 1; r < peers.size(); ++r) {
    EXPECT_EQ(HashFloats(peers[r].params), hash) << what << ": rank " << r << " diverged";
  }
  EXPECT_NE(hash, HashFloats(InitialParams())) << what << ": nothing was applied";
}

// Nothing is lost: what every peer ever published (W x the applied updates, minus the divisor's
// effect in the round where a peer had no samples) plus what is still accumulated equals the sum
// of all gradients. Checked per coordinate with a float tolerance.
void ExpectNothingLost(const std::vector<PeerResult>& peers, uint64_t rounds, int w) {
  std::vector<double> published(kP, 0.0), total(kP, 0.0);
  for (uint64_t step = 0; step < rounds; ++step) {
    int with_samples = 0;
    for (int r = 0; r < w; ++r) with_samples += SamplesOf(r, step) > 0 ? 1 : 0;
    for (size_t i = 0; i < kP; ++i)
      published[i] += double(peers[0].updates[step][i]) * with_samples;
  }
  for (const PeerResult& p : peers) {
    for (size_t i = 0; i < kP; ++i) total[i] += double(p.gradient_sum[i]) - p.accumulator[i];
  }
  for (size_t i = 0; i < kP; ++i) {
    ASSERT_NEAR(published[i], total[i], 1e-5 * (1 + std::fabs(total[i]))) << "coordinate " << i;
  }
}

TEST(MllessZmqTest, FourPeersStayBitwiseIdenticalAndSaveBytes) {
  constexpr uint64_t kRounds = 12;
  for (const double v : {0.01, 0.1}) {
    const auto peers = Train("zmq", 4, v, kRounds);
    ASSERT_EQ(peers.size(), 4u);
    ExpectSameParams(peers, fmt::format("v={}", v));
    ExpectNothingLost(peers, kRounds, 4);
    for (const PeerResult& p : peers) {
      EXPECT_EQ(p.timings.raw_bytes, kRounds * kP * 4);
      // About 1 coordinate in 5 passes each round at 8 bytes instead of 4 x 5.
      EXPECT_LT(p.timings.encoded_bytes, p.timings.raw_bytes * 6 / 10) << "v=" << v;
    }
  }
}

// With v = 0 every non-zero gradient value is published every round: the update is the plain
// rank-order sum of the W gradients divided by the peers with samples, computed here.
TEST(MllessZmqTest, ZeroSignificancePublishesEverythingEveryRound) {
  constexpr uint64_t kRounds = 4;
  const auto peers = Train("zmq", 4, 0.0, kRounds);
  ASSERT_EQ(peers.size(), 4u);
  ExpectSameParams(peers, "v=0");
  std::vector<std::vector<float>> params(4, InitialParams());
  for (uint64_t step = 0; step < kRounds; ++step) {
    std::vector<float> expected(kP, 0.0f);
    int with_samples = 0;
    for (int r = 0; r < 4; ++r) {
      if (SamplesOf(r, step) == 0) continue;
      ++with_samples;
      const auto g = GradientOf(r, step, params[0]);
      for (size_t i = 0; i < kP; ++i) expected[i] += g[i];
    }
    for (float& e : expected) e /= float(with_samples);
    EXPECT_EQ(std::memcmp(expected.data(), peers[2].updates[step].data(), kP * 4), 0)
        << "step " << step;
    for (auto& w : params) {
      for (size_t i = 0; i < kP; ++i) w[i] -= kLr * expected[i];
    }
  }
  for (const PeerResult& p : peers) {
    for (float a : p.accumulator) ASSERT_EQ(a, 0.0f);
  }
}

TEST(MllessAmqpTest, PeersStayBitwiseIdenticalThroughRabbitMq) {
  constexpr uint64_t kRounds = 6;
  const auto peers = Train("amqp", 3, 0.01, kRounds);
  ASSERT_EQ(peers.size(), 3u);
  ExpectSameParams(peers, "amqp v=0.01");
  ExpectNothingLost(peers, kRounds, 3);
}

// MLLess's rule coordinate by coordinate: |acc / w| > v / sqrt(k + 1), with w = 0 always passing a
// non-zero accumulator, and the threshold decaying with the round count.
TEST(MllessRuleTest, PublishesExactlyTheSignificantCoordinates) {
  std::vector<float> w = {1.0f, 1.0f, 0.0f, -1.0f};
  const auto statuses = RunGroup(1, [&](int, Mailbox& mailbox) -> Status {
    P2P_ASSIGN_OR_RETURN(auto s,
                         MakeStrategy("mlless", mailbox, {.significance = 0.01, .parameters = [&] {
                                                            return std::span<const float>(w);
                                                          }}));
    std::vector<float> g = {0.02f, 0.005f, 1e-6f, -0.02f};
    P2P_RETURN_IF_ERROR(s->Average({1, 0}, 8, g));
    // Round 0: threshold 0.01; coordinate 1 (0.005) stays behind.
    EXPECT_EQ(g, (std::vector<float>{0.02f, 0.0f, 1e-6f, -0.02f}));
    g = {0.0f, 0.005f, 0.0f, 0.0f};
    P2P_RETURN_IF_ERROR(s->Average({1, 1}, 8, g));
    // Round 1: threshold 0.01 / sqrt(2) = 0.0071 < 0.005 + 0.005.
    EXPECT_EQ(g, (std::vector<float>{0.0f, 0.005f + 0.005f, 0.0f, 0.0f}));
    g = {0.001f, 0.0f, 0.0f, 0.0f};
    P2P_RETURN_IF_ERROR(s->Average({1, 2}, 8, g));
    EXPECT_EQ(g, (std::vector<float>{0.0f, 0.0f, 0.0f, 0.0f}));  // 0.001 < 0.0058
    const auto state = s->SaveState();
    EXPECT_EQ(state.size(), 2u);
    if (state.size() == 2) {
      EXPECT_EQ(state[0], (std::vector<float>{0.001f, 0.0f, 0.0f, 0.0f}));
      EXPECT_EQ(state[1], (std::vector<float>{3.0f}));
    }
    return Status::Ok();
  });
  EXPECT_TRUE(statuses[0].ok()) << statuses[0].ToString();
}

// With a learning rate the rule weighs the parameter change lr * acc, not the gradient itself.
TEST(MllessRuleTest, TheLearningRateScalesTheAccumulatedGradient) {
  std::vector<float> w = {1.0f, 1.0f};
  const auto statuses = RunGroup(1, [&](int, Mailbox& mailbox) -> Status {
    P2P_ASSIGN_OR_RETURN(
        auto s, MakeStrategy("mlless", mailbox,
                             {.significance = 0.01, .learning_rate = 0.5, .parameters = [&] {
                                return std::span<const float>(w);
                              }}));
    std::vector<float> g = {0.015f, 0.03f};  // changes of 0.0075 and 0.015 against 0.01
    P2P_RETURN_IF_ERROR(s->Average({1, 0}, 8, g));
    EXPECT_EQ(g, (std::vector<float>{0.0f, 0.03f}));
    return Status::Ok();
  });
  EXPECT_TRUE(statuses[0].ok()) << statuses[0].ToString();
}

TEST(MllessRuleTest, StateRoundTripsAndGarbageIsRefused) {
  auto group = broker::MakeInProcGroup(1);
  Mailbox m(*group[0], {.run_id = "r"});
  std::vector<float> w(3, 1.0f);
  auto s = MakeStrategy("mlless", m, {.parameters = [&] { return std::span<const float>(w); }});
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_TRUE((*s)->LoadState({{0.5f, 0.0f, 0.25f}, {7.0f}}).ok());
  EXPECT_EQ((*s)->SaveState(), (std::vector<std::vector<float>>{{0.5f, 0.0f, 0.25f}, {7.0f}}));
  EXPECT_FALSE((*s)->LoadState({{0.5f}}).ok());
  EXPECT_FALSE((*s)->LoadState({{0.5f}, {1.5f}}).ok());
  EXPECT_FALSE((*s)->LoadState({{NAN}, {1.0f}}).ok());
  EXPECT_FALSE((*s)->LoadState({{0.5f}, {-1.0f}}).ok());
}

TEST(MllessFactoryTest, RefusesBadSignificanceCodecsAndRulesNamingWhatIsWrong) {
  auto group = broker::MakeInProcGroup(3);
  Mailbox m(*group[0], {.run_id = "r"});
  const auto message = [&](StrategyOptions o) {
    auto s = MakeStrategy("mlless", m, o);
    EXPECT_FALSE(s.ok());
    EXPECT_EQ(s.status().code(), StatusCode::kInvalidArgument);
    return s.ok() ? std::string() : s.status().message();
  };
  EXPECT_NE(message({.significance = -0.01}).find("--significance must be"), std::string::npos);
  EXPECT_NE(message({.significance = NAN}).find("--significance must be"), std::string::npos);
  EXPECT_NE(message({.significance = INFINITY}).find("--significance"), std::string::npos);
  EXPECT_NE(message({.codec = {"qsgd", {}}}).find("--compression"), std::string::npos);
  EXPECT_NE(message({.rule = "median"}).find("--aggregation"), std::string::npos);
  EXPECT_TRUE(CheckStrategyName("mlless").ok());
  EXPECT_TRUE(MakeStrategy("mlless", m, {.significance = 0}).ok());
}

// Untrusted bytes: every malformed body is refused before it is used.
TEST(MllessBodyTest, RoundTripsAndRefusesMalformedBodies) {
  MllessUpdate u{.samples = 5, .index = {1, 4, 9}, .value = {0.5f, -1.0f, 2.0f}};
  const broker::Bytes sparse = EncodeMllessBody(u, 10);
  EXPECT_EQ(sparse.size(), 9u + 4 + 24);
  auto back = DecodeMllessBody(sparse, 10);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->samples, 5u);
  EXPECT_EQ(back->index, u.index);
  EXPECT_EQ(back->value, u.value);
  // More than half the coordinates: dense is smaller.
  MllessUpdate many{.samples = 1, .index = {0, 1, 3}, .value = {1, 2, 3}};
  const broker::Bytes dense = EncodeMllessBody(many, 4);
  EXPECT_EQ(dense.size(), 9u + 16);
  back = DecodeMllessBody(dense, 4);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->value, (std::vector<float>{1, 2, 0, 3}));

  EXPECT_EQ(DecodeMllessBody(sparse, 11).status().code(), StatusCode::kInvalidArgument);
  const auto refused = [](broker::Bytes b, size_t p) {
    auto r = DecodeMllessBody(b, p);
    return !r.ok() && r.status().code() == StatusCode::kDataLoss;
  };
  EXPECT_TRUE(refused(broker::Bytes(sparse.begin(), sparse.begin() + 8), 10));  // short header
  EXPECT_TRUE(refused(broker::Bytes(sparse.begin(), sparse.end() - 1), 10));    // truncated
  broker::Bytes b = sparse;
  b[8] = std::byte{7};  // unknown form
  EXPECT_TRUE(refused(b, 10));
  b = sparse;
  const uint32_t huge = 0xFFFFFFFF;  // a pair count far beyond the bytes: no allocation
  std::memcpy(b.data() + 9, &huge, 4);
  EXPECT_TRUE(refused(b, 10));
  b = sparse;
  const uint32_t out_of_range = 10;
  std::memcpy(b.data() + 13 + 8, &out_of_range, 4);  // third index
  EXPECT_TRUE(refused(b, 10));
  b = sparse;
  const uint32_t descending = 0;
  std::memcpy(b.data() + 13 + 4, &descending, 4);  // second index below the first
  EXPECT_TRUE(refused(b, 10));
  b = sparse;
  const float nan = NAN;
  std::memcpy(b.data() + 13 + 12, &nan, 4);
  EXPECT_TRUE(refused(b, 10));
  b = dense;
  std::memcpy(b.data() + 9, &nan, 4);
  EXPECT_TRUE(refused(b, 4));
}

// A peer sending another strategy's gradient fails the round naming it; nothing is applied.
TEST(MllessRuleTest, RefusesAnUpdateOfAnotherStrategy) {
  std::vector<float> w(8, 1.0f);
  const auto statuses = RunGroup(2, [&](int r, Mailbox& mailbox) -> Status {
    std::vector<float> g(8, 0.5f);
    if (r == 1) {
      P2P_ASSIGN_OR_RETURN(auto s,
                           MakeStrategy("allgather-average", mailbox, {.peer_timeout = 5s}));
      (void)s->Average({1, 0}, 4, g);
      return Status::Ok();
    }
    P2P_ASSIGN_OR_RETURN(auto s,
                         MakeStrategy("mlless", mailbox, {.peer_timeout = 60s, .parameters = [&] {
                                                            return std::span<const float>(w);
                                                          }}));
    return s->Average({1, 0}, 4, g);
  });
  EXPECT_EQ(statuses[0].code(), StatusCode::kInvalidArgument) << statuses[0].ToString();
  EXPECT_NE(statuses[0].message().find("rank 1"), std::string::npos) << statuses[0].message();
}

}  // namespace
}  // namespace p2p::sync
