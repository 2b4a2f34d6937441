// --staleness S (sync/staleness.h) over real ZeroMQ sockets: round r applies allgather-average's
// combination of round r-S's gradients (computed here independently, compared bit for bit), the
// first S rounds apply zero, rounds carry across an epoch end, every peer ends with the same
// parameters, and a peer really can finish round r+1 before another peer has sent round r+1.
#include "sync/staleness.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <future>
#include <thread>

#include "common/hash.h"
#include "sync/rules/rule.h"
#include "sync/strategy.h"
#include "tests/sync/run_group.h"
#include "tests/sync/transport_group.h"

namespace p2p::sync {
namespace {

using namespace std::chrono_literals;

constexpr size_t kP = 1031;
constexpr float kLr = 0.1f;
constexpr uint64_t kStepsPerEpoch = 4;
constexpr uint64_t kEpochs = 2;

std::vector<float> GradientOf(int rank, uint64_t round, std::span<const float> w) {
  std::vector<float> g(w.size());
  for (size_t i = 0; i < w.size(); ++i) {
    g[i] = 0.01f * std::cos(float(i * (rank + 1) + round)) + 0.1f * w[i];
  }
  return g;
}

uint32_t SamplesOf(int rank, uint64_t round) { return rank == 2 && round == 3 ? 0 : 16 + rank; }

struct PeerLog {
  std::vector<std::vector<float>> grads, updates;  // per global round
  std::vector<float> params;
};

std::vector<PeerLog> Train(int w, int staleness) {
  const std::string run_id = broker::amqp_test::UniqueRunId("stale");
  auto transports = test::ConnectedTransports("zmq", w, run_id);
  EXPECT_TRUE(transports.ok()) << transports.status().ToString();
  if (!transports.ok()) return {};
  std::vector<PeerLog> out(w);
  std::vector<Status> statuses(w);
  std::vector<std::thread> threads;
  for (int r = 0; r < w; ++r) {
    threads.emplace_back([&, r] {
      statuses[r] = [&]() -> Status {
        PeerLog& me = out[r];
        me.params.assign(kP, 0.05f);
        Mailbox mailbox(*(*transports)[r], {.run_id = run_id});
        P2P_ASSIGN_OR_RETURN(auto strategy,
                             MakeStrategy("allgather-average", mailbox,
                                          {.peer_timeout = 60s, .staleness = staleness}));
        uint64_t global = 0;
        for (uint64_t epoch = 1; epoch <= kEpochs; ++epoch) {
          for (uint64_t step = 0; step < kStepsPerEpoch; ++step, ++global) {
            std::vector<float> g = GradientOf(r, global, me.params);
            me.grads.push_back(g);
            P2P_RETURN_IF_ERROR(strategy->Average({epoch, step}, SamplesOf(r, global), g));
            for (size_t i = 0; i < kP; ++i) me.params[i] -= kLr * g[i];
            me.updates.push_back(std::move(g));
          }
        }
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

class StalenessZmqTest : public ::testing::TestWithParam<int> {};

TEST_P(StalenessZmqTest, RoundRAppliesRoundRMinusSAndPeersStayIdentical) {
  const int s = GetParam();
  constexpr int kW = 4;
  const auto peers = Train(kW, s);
  ASSERT_EQ(peers.size(), size_t{kW});
  const std::string hash = HashFloats(peers[0].params);
  for (int r = 1; r < kW; ++r) EXPECT_EQ(HashFloats(peers[r].params), hash) << "rank " << r;
  const auto mean = rules::MakeCheckedRule("mean");
  const uint64_t rounds = kEpochs * kStepsPerEpoch;
  for (uint64_t round = 0; round < rounds; ++round) {
    std::vector<float> expected(kP, 0.0f);
    if (round >= uint64_t(s)) {
      std::vector<rules::Input> inputs;
      for (int r = 0; r < kW; ++r) {
        inputs.push_back({peers[r].grads[round - s], SamplesOf(r, round - s)});
      }
      ASSERT_TRUE(mean->Aggregate(inputs, expected).ok());
    }
    for (int r = 0; r < kW; ++r) {
      EXPECT_EQ(std::memcmp(expected.data(), peers[r].updates[round].data(), kP * 4), 0)
          << "S=" << s << " rank " << r << " round " << round;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(S, StalenessZmqTest, ::testing::Values(1, 2));

// With S = 1 rank 0 completes rounds 0 and 1 while rank 1 has only sent round 0: the exchange of
// round 1 is still "in flight". (With S = 0 rank 0 would block in round 1 until rank 1 sent it.)
TEST(StalenessTest, APeerRunsAheadWhileTheOthersGradientIsInFlight) {
  std::promise<void> rank0_done_two_rounds;
  auto done = rank0_done_two_rounds.get_future();
  const auto statuses = RunGroup(2, [&](int r, Mailbox& mailbox) -> Status {
    P2P_ASSIGN_OR_RETURN(auto strategy, MakeStrategy("allgather-average", mailbox,
                                                     {.peer_timeout = 60s, .staleness = 1}));
    std::vector<float> g(16, 1.0f + float(r));
    P2P_RETURN_IF_ERROR(strategy->Average({1, 0}, 4, g));
    if (r == 0) {
      g.assign(16, 1.0f);
      P2P_RETURN_IF_ERROR(strategy->Average({1, 1}, 4, g));
      if (g != std::vector<float>(16, 1.5f)) return Internal("round 1 applied {}", g[0]);
      rank0_done_two_rounds.set_value();
    } else if (done.wait_for(60s) != std::future_status::ready) {
      return Internal("rank 0 did not finish round 1 while rank 1 held back its round 1");
    }
    g.assign(16, 1.0f);
    P2P_RETURN_IF_ERROR(strategy->Average({1, r == 0 ? 2u : 1u}, 4, g));
    if (r == 1) P2P_RETURN_IF_ERROR(strategy->Average({1, 2}, 4, g));
    return Status::Ok();
  });
  for (const Status& s : statuses) EXPECT_TRUE(s.ok()) << s.ToString();
}

TEST(StalenessTest, RefusesBadValuesAndOtherStrategiesNamingWhatIsWrong) {
  auto group = broker::MakeInProcGroup(3);
  Mailbox m(*group[0], {.run_id = "r"});
  const auto message = [&](const std::string& name, int s) {
    auto made = MakeStrategy(name, m, {.staleness = s});
    EXPECT_FALSE(made.ok()) << name << " " << s;
    EXPECT_EQ(made.status().code(), StatusCode::kInvalidArgument);
    return made.ok() ? std::string() : made.status().message();
  };
  EXPECT_NE(message("allgather-average", 3).find("--staleness must be 0"), std::string::npos);
  EXPECT_NE(message("allgather-average", -1).find("--staleness must be 0"), std::string::npos);
  EXPECT_NE(message("mlless", 1).find("allgather-average only"), std::string::npos);
  EXPECT_NE(message("reduce-scatter-average", 2).find("allgather-average only"), std::string::npos);
  EXPECT_TRUE(MakeStrategy("allgather-average", m, {.staleness = 2}).ok());
  EXPECT_TRUE(MakeStrategy("reduce-scatter-average", m, {.staleness = 0}).ok());
}

}  // namespace
}  // namespace p2p::sync
