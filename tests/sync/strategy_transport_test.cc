// Both strategies over every transport the peers use (in-process, ZeroMQ, AMQP via the RabbitMQ
// at $P2P_AMQP_URL), parameterised as gloo parameterises its collective tests: transport x ranks
// (x strategy). Every rank must end each round with exactly the bits of the rank-order
// sample-weighted mean of the gradients sent, whatever carried them.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cstring>
#include <thread>
#include <tuple>

#include "sync/rules/mean.h"
#include "sync/strategy.h"
#include "tests/sync/transport_group.h"

namespace p2p::sync {
namespace {

using namespace std::chrono_literals;

constexpr size_t kP = 2053;  // not a multiple of W: uneven reduce-scatter slices
constexpr uint64_t kRounds = 3;

std::vector<float> GradientOf(int rank, uint64_t step) {
  std::vector<float> g(kP);
  for (size_t i = 0; i < kP; ++i) {
    g[i] = 0.001f * float(i % 97) - 0.3f * float(rank) + 1.0f / float(3 + step);
  }
  return g;
}

// Rank 1 has no samples in step 1 (an exhausted shard): it must carry no weight.
uint32_t SamplesOf(int rank, uint64_t step) { return rank == 1 && step == 1 ? 0 : 10 + rank; }

std::vector<float> Expected(int w, uint64_t step) {
  std::vector<std::vector<float>> grads;
  std::vector<rules::Input> inputs;
  for (int r = 0; r < w; ++r) grads.push_back(GradientOf(r, step));
  for (int r = 0; r < w; ++r) inputs.push_back({grads[r], SamplesOf(r, step)});
  std::vector<float> out(kP);
  EXPECT_TRUE(rules::MeanRule().Aggregate(inputs, out).ok());
  return out;
}

using Param = std::tuple<std::string, int, std::string>;  // transport, ranks, strategy

class StrategyTransportTest : public ::testing::TestWithParam<Param> {};

TEST_P(StrategyTransportTest, EveryRankAppliesTheExactRankOrderMean) {
  const auto& [kind, w, strategy_name] = GetParam();
  const std::string run_id = broker::amqp_test::UniqueRunId("sync-" + kind);
  auto transports = test::ConnectedTransports(kind, w, run_id);
  ASSERT_TRUE(transports.ok()) << transports.status().ToString();
  std::vector<std::vector<std::vector<float>>> out(w, std::vector<std::vector<float>>(kRounds));
  std::vector<Status> statuses(w);
  std::vector<std::thread> threads;
  for (int r = 0; r < w; ++r) {
    threads.emplace_back([&, r] {
      statuses[r] = [&]() -> Status {
        Mailbox mailbox(*(*transports)[r], {.run_id = run_id});
        P2P_ASSIGN_OR_RETURN(auto strategy,
                             MakeStrategy(strategy_name, mailbox, {.peer_timeout = 60s}));
        for (uint64_t step = 0; step < kRounds; ++step) {
          out[r][step] = GradientOf(r, step);
          P2P_RETURN_IF_ERROR(strategy->Average({1, step}, SamplesOf(r, step), out[r][step]));
        }
        if (mailbox.rejects().total() != 0) {
          return Internal("rank {} dropped {} messages", r, mailbox.rejects().total());
        }
        return Status::Ok();
      }();
    });
  }
  for (auto& t : threads) t.join();
  for (int r = 0; r < w; ++r) ASSERT_TRUE(statuses[r].ok()) << statuses[r].ToString();
  for (uint64_t step = 0; step < kRounds; ++step) {
    const auto expected = Expected(w, step);
    for (int r = 0; r < w; ++r) {
      ASSERT_EQ(out[r][step].size(), kP);
      EXPECT_EQ(std::memcmp(out[r][step].data(), expected.data(), kP * sizeof(float)), 0)
          << kind << " W=" << w << " rank " << r << " step " << step << " differs bitwise";
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    TransportsRanksStrategies, StrategyTransportTest,
    ::testing::Combine(::testing::Values("inproc", "zmq", "amqp"), ::testing::Values(2, 3, 4),
                       ::testing::Values("allgather-average", "reduce-scatter-average")),
    [](const ::testing::TestParamInfo<Param>& info) {
      std::string strategy = std::get<2>(info.param);
      std::erase(strategy, '-');
      return fmt::format("{}_{}ranks_{}", std::get<0>(info.param), std::get<1>(info.param),
                         strategy);
    });

}  // namespace
}  // namespace p2p::sync
