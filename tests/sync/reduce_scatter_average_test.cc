#include "sync/reduce_scatter_average.h"

#include <gtest/gtest.h>

#include "broker/inproc_transport.h"
#include "sync/allgather_average.h"
#include "tests/sync/run_group.h"

namespace p2p::sync {
namespace {

using namespace std::chrono_literals;

// Rank r's gradient in step `step`: values that differ per rank, step and coordinate.
std::vector<float> GradientOf(int rank, uint64_t step, size_t p) {
  std::vector<float> g(p);
  for (size_t i = 0; i < p; ++i) {
    g[i] = 0.001f * float(i % 97) - 0.3f * float(rank) + 1.0f / 3 + 0.01f * float(step);
  }
  return g;
}

// Rank 1 has no samples in step 1 (an exhausted shard): weight 0.
uint32_t SamplesOf(int rank, uint64_t step) { return rank == 1 && step == 1 ? 0 : 10 + rank; }

// Three rounds of `name` on W in-process peers; every rank's result per round.
std::vector<std::vector<std::vector<float>>> RunStrategy(const std::string& name, int w, size_t p) {
  std::vector<std::vector<std::vector<float>>> out(3, std::vector<std::vector<float>>(w));
  const auto statuses = RunGroup(w, [&](int r, Mailbox& mailbox) -> Status {
    P2P_ASSIGN_OR_RETURN(auto strategy, MakeStrategy(name, mailbox, {.peer_timeout = 10s}));
    for (uint64_t step = 0; step < 3; ++step) {
      std::vector<float> g = GradientOf(r, step, p);
      P2P_RETURN_IF_ERROR(strategy->Average({1, step}, SamplesOf(r, step), g));
      out[step][r] = std::move(g);
    }
    return Status::Ok();
  });
  for (int r = 0; r < w; ++r) EXPECT_TRUE(statuses[r].ok()) << statuses[r].ToString();
  return out;
}

struct Shape {
  int w;
  size_t p;
};

class ReduceScatterTest : public ::testing::TestWithParam<Shape> {};

// The same bits as allgather-average on every rank, whatever W and P (also P < W: some ranks
// own an empty slice, and P not a multiple of W: slices of unequal length).
TEST_P(ReduceScatterTest, GivesAllgatherAveragesBitsOnEveryRank) {
  const auto [w, p] = GetParam();
  const auto reference = RunStrategy("allgather-average", w, p);
  const auto rs = RunStrategy("reduce-scatter-average", w, p);
  for (size_t step = 0; step < 3; ++step) {
    for (int r = 0; r < w; ++r) {
      ASSERT_EQ(rs[step][r].size(), p);
      EXPECT_EQ(rs[step][r], reference[step][0]) << "step " << step << " rank " << r;
    }
  }
  if (p > 0 && w > 1) {  // and it is an average, not a copy of the input
    EXPECT_NE(rs[0][0], GradientOf(0, 0, p));
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, ReduceScatterTest,
                         ::testing::Values(Shape{1, 100}, Shape{2, 1000}, Shape{3, 1001},
                                           Shape{4, 1000}, Shape{5, 3}, Shape{8, 12345}),
                         [](const auto& info) {
                           return fmt::format("W{}_P{}", info.param.w, info.param.p);
                         });

// A codec is allowed (sync/reduce_scatter_codec.h); a rule that compares whole gradients is not.
TEST(ReduceScatterStrategyTest, TakesCodecsButRefusesWholeGradientRules) {
  auto group = broker::MakeInProcGroup(1);
  Mailbox m(*group[0], {.run_id = "r"});
  EXPECT_TRUE(MakeStrategy("reduce-scatter-average", m, {.codec = {"qsgd", {}}}).ok());
  auto s = MakeStrategy("reduce-scatter-average", m, {.rule = "geomedian"});
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.status().message().find("allgather-average"), std::string::npos);
  EXPECT_TRUE(MakeStrategy("reduce-scatter-average", m, {}).ok());
}

TEST(ReduceScatterStrategyTest, AMissingPeerTimesOutNamingIt) {
  auto group = broker::MakeInProcGroup(3);
  Mailbox m0(*group[0], {.run_id = "r"});
  Mailbox m1(*group[1], {.run_id = "r"});
  ReduceScatterAverage s0(m0, {.peer_timeout = 1ms});
  ReduceScatterAverage s1(m1, {.peer_timeout = 50ms});
  std::vector<float> g0(6, 1.0f), g1(6, 2.0f);
  (void)s0.Average({1, 0}, 1, g0);  // rank 0 sends its slices; rank 2 never does
  const Status s = s1.Average({1, 0}, 1, g1);
  ASSERT_EQ(s.code(), StatusCode::kTimeout);
  EXPECT_NE(s.message().find("rank(s) 2"), std::string::npos) << s.message();
}

TEST(ReduceScatterStrategyTest, NoSamplesAnywhereIsAnError) {
  const auto statuses = RunGroup(2, [](int, Mailbox& mailbox) -> Status {
    ReduceScatterAverage strategy(mailbox, {.peer_timeout = 10s});
    std::vector<float> g(8, 1.0f);
    return strategy.Average({1, 0}, 0, g);
  });
  for (const Status& s : statuses) {
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.ToString();
    EXPECT_NE(s.message().find("no peer had samples"), std::string::npos) << s.message();
  }
}

}  // namespace
}  // namespace p2p::sync
