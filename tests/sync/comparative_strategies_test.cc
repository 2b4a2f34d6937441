// The comparative study's strategies (sync/comparative_strategies.h) over real ZeroMQ sockets on
// loopback TCP (and one case over the RabbitMQ at $P2P_AMQP_URL): every rank must end each round
// with exactly the bits allgather-average gives — the rank-order rule output — whatever the
// number of aggregators (1, 2, W, and shard counts that do not divide P).
#include "sync/comparative_strategies.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <thread>

#include "sync/sharded_reduce.h"
#include "sync/strategy.h"
#include "tests/sync/run_group.h"
#include "tests/sync/transport_group.h"

namespace p2p::sync {
namespace {

using namespace std::chrono_literals;

constexpr uint64_t kRounds = 3;

std::vector<float> GradientOf(int rank, uint64_t step, size_t p) {
  std::vector<float> g(p);
  for (size_t i = 0; i < p; ++i) {
    g[i] = 0.001f * float(i % 97) - 0.3f * float(rank) + 1.0f / float(3 + step);
  }
  return g;
}

// Rank 1 has no samples in step 1 (an exhausted shard): it must carry no weight.
uint32_t SamplesOf(int rank, uint64_t step) { return rank == 1 && step == 1 ? 0 : 10 + rank; }

using Results = std::vector<std::vector<std::vector<float>>>;  // [rank][step]

// kRounds rounds of `name` on W ranks connected over `kind`; every rank's averaged gradients.
Results RunStrategy(const std::string& kind, int w, size_t p, const std::string& name,
                    StrategyOptions options = {.peer_timeout = 60s}) {
  const std::string run_id = broker::amqp_test::UniqueRunId("cmp-" + kind);
  auto transports = test::ConnectedTransports(kind, w, run_id);
  EXPECT_TRUE(transports.ok()) << transports.status().ToString();
  if (!transports.ok()) return {};
  Results out(w, std::vector<std::vector<float>>(kRounds));
  std::vector<Status> statuses(w);
  std::vector<std::thread> threads;
  for (int r = 0; r < w; ++r) {
    threads.emplace_back([&, r] {
      statuses[r] = [&]() -> Status {
        Mailbox mailbox(*(*transports)[r], {.run_id = run_id});
        P2P_ASSIGN_OR_RETURN(auto strategy, MakeStrategy(name, mailbox, options));
        for (uint64_t step = 0; step < kRounds; ++step) {
          out[r][step] = GradientOf(r, step, p);
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
  for (int r = 0; r < w; ++r)
    EXPECT_TRUE(statuses[r].ok()) << name << ": " << statuses[r].ToString();
  return out;
}

void ExpectSameBits(const Results& got, const Results& reference, const std::string& what) {
  ASSERT_EQ(got.size(), reference.size()) << what;
  for (size_t r = 0; r < got.size(); ++r) {
    for (uint64_t step = 0; step < kRounds; ++step) {
      const auto& a = got[r][step];
      const auto& b = reference[0][step];
      ASSERT_EQ(a.size(), b.size()) << what;
      EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0)
          << what << ": rank " << r << " step " << step << " differs bitwise from allgather";
    }
  }
}

struct Case {
  int w;
  size_t p;
  std::string strategy;
};

class ComparativeZmqTest : public ::testing::TestWithParam<Case> {};

TEST_P(ComparativeZmqTest, EveryRankGetsAllgatherAveragesBits) {
  const Case& c = GetParam();
  const Results reference = RunStrategy("zmq", c.w, c.p, "allgather-average");
  const Results got = RunStrategy("zmq", c.w, c.p, c.strategy);
  ExpectSameBits(got, reference, fmt::format("{} W={} P={}", c.strategy, c.w, c.p));
  // An average, not a copy of the input (with more than one rank).
  if (!got.empty() && c.w > 1) {
    EXPECT_NE(got[0][0], GradientOf(0, 0, c.p));
  }
}

// M, K = 1, 2 and W; P = 2053 is prime, so no M > 1 divides it; M = 3 of W = 4 (aggregators
// 0, 1, 2) and P < M (empty shards) too.
INSTANTIATE_TEST_SUITE_P(
    Shapes, ComparativeZmqTest,
    ::testing::Values(Case{4, 2053, "allreduce-master"}, Case{2, 2053, "allreduce-master"},
                      Case{4, 2053, "scatter-reduce"}, Case{4, 2053, "hierarchical:shards=1"},
                      Case{4, 2053, "hierarchical:shards=2"},
                      Case{4, 2053, "hierarchical:shards=4"},
                      Case{4, 2053, "hierarchical:shards=3"},
                      Case{3, 1000, "hierarchical:shards=2"}, Case{4, 2053, "k-reduce:k=1"},
                      Case{4, 2053, "k-reduce:k=2"}, Case{4, 2053, "k-reduce:k=4"},
                      Case{5, 2, "k-reduce:k=3"}, Case{1, 100, "hierarchical:shards=1"},
                      Case{1, 100, "allreduce-master"}),
    [](const ::testing::TestParamInfo<Case>& info) {
      std::string name = info.param.strategy;
      std::erase_if(name, [](char ch) { return !std::isalnum(static_cast<unsigned char>(ch)); });
      return fmt::format("W{}_P{}_{}", info.param.w, info.param.p, name);
    });

TEST(ComparativeAmqpTest, ShardsAndMasterGiveAllgatherBitsThroughRabbitMq) {
  const Results reference = RunStrategy("amqp", 3, 2053, "allgather-average");
  ExpectSameBits(RunStrategy("amqp", 3, 2053, "hierarchical:shards=2"), reference, "amqp shards=2");
  ExpectSameBits(RunStrategy("amqp", 3, 2053, "allreduce-master"), reference,
                 "amqp allreduce-master");
}

// The master decodes every payload, its own too, exactly as allgather-average does, so a lossy
// codec (stochastic, with error feedback) gives the same bits as allgather-average with it.
TEST(AllreduceMasterTest, WithLossyCodecsGivesAllgatherBits) {
  for (const std::string spec : {"qsgd:bits=4", "topk:ratio=0.1", "fp16"}) {
    auto codec = codecs::ParseCodecSpec(spec);
    ASSERT_TRUE(codec.ok()) << codec.status().ToString();
    const StrategyOptions options{.peer_timeout = 60s, .codec = *codec, .seed = 7};
    const Results reference = RunStrategy("zmq", 3, 2053, "allgather-average", options);
    ExpectSameBits(RunStrategy("zmq", 3, 2053, "allreduce-master", options), reference, spec);
  }
}

// Whole-gradient rules need the whole gradients: the master has them, shard aggregators do not.
TEST(AllreduceMasterTest, AppliesWholeGradientRulesThatShardsRefuse) {
  const StrategyOptions options{.peer_timeout = 60s, .rule = "krum:f=1"};
  // 6 ranks: krum:f=1 needs 5 inputs with samples, and rank 1 has none in step 1.
  const Results reference = RunStrategy("inproc", 6, 300, "allgather-average", options);
  ExpectSameBits(RunStrategy("inproc", 6, 300, "allreduce-master", options), reference, "krum");
  auto group = broker::MakeInProcGroup(6);
  Mailbox m(*group[0], {.run_id = "r"});
  auto s = MakeStrategy("k-reduce:k=2", m, options);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.status().message().find("allreduce-master"), std::string::npos)
      << s.status().message();
}

TEST(ShardedReduceTest, RefusesBadCountsAndLossyCodecsNamingWhatIsWrong) {
  auto group = broker::MakeInProcGroup(3);
  Mailbox m(*group[0], {.run_id = "r"});
  const auto message = [&](const std::string& name, StrategyOptions o = {}) {
    auto s = MakeStrategy(name, m, o);
    EXPECT_FALSE(s.ok()) << name;
    EXPECT_EQ(s.status().code(), StatusCode::kInvalidArgument) << name;
    return s.ok() ? std::string() : s.status().message();
  };
  EXPECT_NE(message("hierarchical:shards=4").find("4 aggregators but the run has 3 peers"),
            std::string::npos);
  EXPECT_NE(message("k-reduce:k=0").find("not a positive whole number"), std::string::npos);
  EXPECT_NE(message("k-reduce:k=2x").find("not a positive whole number"), std::string::npos);
  EXPECT_NE(message("hierarchical").find("hierarchical:shards=M"), std::string::npos);
  EXPECT_NE(message("hierarchical:shards=2", {.codec = {"qsgd", {}}}).find("--compression"),
            std::string::npos);
  EXPECT_NE(message("scatter-reduce", {.codec = {"qsgd", {}}}).find("--compression"),
            std::string::npos);
  EXPECT_NE(message("spirals").find("valid: allgather-average"), std::string::npos);
  EXPECT_TRUE(MakeStrategy("hierarchical:shards=3", m, {}).ok());
  EXPECT_TRUE(CheckStrategyName("k-reduce:k=7").ok());  // checked against W when the run starts
  EXPECT_TRUE(CheckStrategyName("allreduce-master").ok());
  EXPECT_FALSE(CheckStrategyName("k-reduce:k=K").ok());
  EXPECT_FALSE(CheckStrategyName("nonsense").ok());
}

// No samples anywhere: every rank fails with the reason promptly, the non-aggregators too (they
// are told instead of waiting out the 60 s deadline).
TEST(ShardedReduceTest, NoSamplesAnywhereFailsEveryRankWithTheReason) {
  for (const std::string name : {"allreduce-master", "hierarchical:shards=2"}) {
    const auto statuses = RunGroup(4, [&](int, Mailbox& mailbox) -> Status {
      P2P_ASSIGN_OR_RETURN(auto strategy, MakeStrategy(name, mailbox, {.peer_timeout = 60s}));
      std::vector<float> g(10, 1.0f);
      return strategy->Average({1, 0}, 0, g);
    });
    for (const Status& s : statuses) {
      EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << name << ": " << s.ToString();
      EXPECT_NE(s.message().find("no peer had samples"), std::string::npos) << s.message();
    }
  }
}

// A rule that refuses the round on the aggregator fails every rank promptly, pointing at it.
TEST(AllreduceMasterTest, ARuleFailureOnTheAggregatorFailsEveryRankPromptly) {
  const auto statuses = RunGroup(5, [&](int r, Mailbox& mailbox) -> Status {
    P2P_ASSIGN_OR_RETURN(auto strategy, MakeStrategy("allreduce-master", mailbox,
                                                     {.peer_timeout = 60s, .rule = "krum:f=1"}));
    std::vector<float> g(10, 1.0f);
    // krum:f=1 needs 5 inputs with samples; rank 4 has none this round.
    return strategy->Average({1, 0}, r == 4 ? 0 : 5, g);
  });
  EXPECT_NE(statuses[0].message().find("needs n >= 2f + 3"), std::string::npos)
      << statuses[0].ToString();
  for (int r = 1; r < 5; ++r) {
    EXPECT_EQ(statuses[r].code(), StatusCode::kInvalidArgument) << statuses[r].ToString();
    EXPECT_NE(statuses[r].message().find("aggregator (rank 0) could not combine"),
              std::string::npos)
        << statuses[r].message();
  }
}

// After a view change drops ranks 0 and 3 (0 was an aggregator), the survivors 1, 2, 4 take over
// every shard — fewer members than M = 4 shards, so each aggregates one — and still get the bits
// allgather-average computes over the same members.
TEST(ShardedReduceTest, AViewWithoutAnAggregatorRedistributesTheShards) {
  const std::vector<int> survivors = {1, 2, 4};
  const auto run = [&](const std::string& name) {
    std::vector<std::vector<float>> out(5);
    const auto statuses = RunGroup(5, [&](int r, Mailbox& mailbox) -> Status {
      if (std::find(survivors.begin(), survivors.end(), r) == survivors.end()) return Status::Ok();
      mailbox.InstallView({.id = 1, .members = survivors});
      P2P_ASSIGN_OR_RETURN(auto strategy, MakeStrategy(name, mailbox, {.peer_timeout = 60s}));
      out[r] = GradientOf(r, 0, 1001);
      return strategy->Average({1, 0}, SamplesOf(r, 0), out[r]);
    });
    for (const Status& st : statuses) EXPECT_TRUE(st.ok()) << name << ": " << st.ToString();
    return out;
  };
  const auto reference = run("allgather-average");
  for (const std::string name : {"hierarchical:shards=4", "k-reduce:k=2", "allreduce-master"}) {
    const auto got = run(name);
    for (int r : survivors) {
      EXPECT_EQ(got[r], reference[1]) << name << " rank " << r;
      EXPECT_NE(got[r], GradientOf(r, 0, 1001)) << name << " rank " << r;
    }
  }
}

TEST(AllreduceMasterTest, ADeadMasterTimesOutNamingIt) {
  auto group = broker::MakeInProcGroup(3);
  Mailbox m1(*group[1], {.run_id = "r"});
  auto s1 = MakeStrategy("allreduce-master", m1, {.peer_timeout = 50ms});
  ASSERT_TRUE(s1.ok());
  std::vector<float> g(6, 2.0f);
  const Status s = (*s1)->Average({1, 0}, 1, g);  // rank 0, the aggregator, never answers
  ASSERT_EQ(s.code(), StatusCode::kTimeout) << s.ToString();
  EXPECT_NE(s.message().find("aggregator rank 0"), std::string::npos) << s.message();
}

}  // namespace
}  // namespace p2p::sync
