// The large-gradient fast path (issue 18): message buffers are reused across rounds through the
// BytePool (common/byte_pool.h). Over real ZeroMQ sockets: rounds of different sizes in a row
// keep every rank's result bitwise the rank-order mean, even when the pool starts out full of
// stale bytes; and rounds of 36 MB messages (over glibc's 32 MiB mmap threshold, where every
// message used to be fresh pages) neither page-fault their messages in again nor grow the
// process's memory.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <sys/resource.h>

#include <barrier>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>

#include "common/byte_pool.h"
#include "common/malloc_tuning.h"
#include "sync/rules/mean.h"
#include "sync/strategy.h"
#include "tests/sync/transport_group.h"

namespace p2p::sync {
namespace {

using namespace std::chrono_literals;

// Fills `g` (resized to p, so a buffer of that size is reused) with rank's gradient of `step`.
void FillGradient(int rank, uint64_t step, size_t p, std::vector<float>& g) {
  g.resize(p);
  for (size_t i = 0; i < p; ++i) {
    g[i] = 0.001f * float(i % 89) - 0.3f * float(rank) + 1.0f / float(3 + step);
  }
}

std::vector<float> GradientOf(int rank, uint64_t step, size_t p) {
  std::vector<float> g;
  FillGradient(rank, step, p, g);
  return g;
}

std::vector<float> Expected(int w, uint64_t step, size_t p) {
  std::vector<std::vector<float>> grads;
  std::vector<rules::Input> inputs;
  for (int r = 0; r < w; ++r) grads.push_back(GradientOf(r, step, p));
  for (int r = 0; r < w; ++r) inputs.push_back({grads[r], uint32_t(10 + r)});
  std::vector<float> out(p);
  EXPECT_TRUE(rules::MeanRule().Aggregate(inputs, out).ok());
  return out;
}

// Runs rounds of sizes[step] floats of `strategy_name` on W ZeroMQ peers (one thread each);
// `between(step)` runs on one thread after every round, with every peer parked. Checks every
// round's result (keep_all) or, to allocate nothing per round, only the last one.
template <typename Between>
void RunRounds(const std::string& strategy_name, int w, const std::vector<size_t>& sizes,
               Between between, bool keep_all = true) {
  const std::string run_id = broker::amqp_test::UniqueRunId("buffers");
  auto transports = test::ConnectedTransports("zmq", w, run_id);
  ASSERT_TRUE(transports.ok()) << transports.status().ToString();
  uint64_t done_step = 0;
  std::barrier sync_point(w, [&]() noexcept { between(done_step++); });
  std::vector<Status> statuses(w);
  std::vector<std::vector<std::vector<float>>> out(w);
  std::vector<std::thread> threads;
  for (int r = 0; r < w; ++r) {
    threads.emplace_back([&, r] {
      Mailbox mailbox(*(*transports)[r], {.run_id = run_id});
      auto strategy = MakeStrategy(strategy_name, mailbox, {.peer_timeout = 120s});
      std::vector<float> g;
      for (uint64_t step = 0; step < sizes.size(); ++step) {
        FillGradient(r, step, sizes[step], g);
        if (statuses[r].ok()) {
          statuses[r] =
              strategy.ok() ? (*strategy)->Average({1, step}, 10 + r, g) : strategy.status();
        }
        if (keep_all) out[r].push_back(g);
        sync_point.arrive_and_wait();
      }
      if (!keep_all) out[r].push_back(std::move(g));
      if (statuses[r].ok() && mailbox.rejects().total() != 0) {
        statuses[r] = Internal("rank {} dropped {} messages", r, mailbox.rejects().total());
      }
    });
  }
  for (auto& t : threads) t.join();
  for (int r = 0; r < w; ++r) ASSERT_TRUE(statuses[r].ok()) << statuses[r].ToString();
  for (uint64_t step = keep_all ? 0 : sizes.size() - 1; step < sizes.size(); ++step) {
    const auto expected = Expected(w, step, sizes[step]);
    const size_t at = keep_all ? step : 0;
    for (int r = 0; r < w; ++r) {
      ASSERT_EQ(out[r][at].size(), sizes[step]);
      EXPECT_EQ(std::memcmp(out[r][at].data(), expected.data(), sizes[step] * sizeof(float)), 0)
          << strategy_name << " rank " << r << " step " << step << " (P " << sizes[step]
          << ") differs bitwise";
    }
  }
}

class LargeRoundBuffersTest : public ::testing::TestWithParam<std::string> {};

TEST_P(LargeRoundBuffersTest, RoundsOfDifferentSizesInARowStayExactOverStaleBuffers) {
  // Stale bytes in every buffer the pool will hand out: they must never show through.
  BytePool::Global().Clear();
  for (size_t mib : {1, 2, 3, 5, 9}) {
    BytePool::Global().Give(std::vector<std::byte>(mib << 20, std::byte{0xff}));
  }
  // Multi-chunk (> 1 MiB) and single-chunk messages, growing and shrinking; 300007 floats do
  // not split evenly into 4 slices.
  RunRounds(GetParam(), 4, {600'000, 300'007, 1'200'000, 50'000, 600'000}, [](uint64_t) {});
}

INSTANTIATE_TEST_SUITE_P(Strategies, LargeRoundBuffersTest,
                         ::testing::Values("allgather-average", "reduce-scatter-average"),
                         [](const auto& info) {
                           std::string name = info.param;
                           std::erase(name, '-');
                           return name;
                         });

long ResidentKiB() {
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  }
  return -1;
}

long MinorFaults() {
  rusage ru{};
  ::getrusage(RUSAGE_SELF, &ru);
  return ru.ru_minflt;
}

TEST(LargeRoundBuffers, MessagesOverTheMmapThresholdAreNotFaultedInEveryRound) {
  // 9M floats: 36 MB messages, over glibc's largest mmap threshold (32 MiB), so without reuse
  // each of them was a fresh mapping: ~9k faults per message and per copy of it.
  constexpr size_t kP = 9'000'000;
  constexpr size_t kPages = kP * sizeof(float) / 4096;
  constexpr int kWarmup = 2, kRounds = 6;
  // As p2ptrain's main() does: the 1 MiB ZeroMQ frames then reuse heap memory too, so what is
  // counted here is the messages themselves.
  KeepFreedMemoryForReuse();
  long faults_at = 0, rss_at = 0, faults = 0, rss_growth = 0;
  RunRounds(
      "allgather-average", 2, std::vector<size_t>(kWarmup + kRounds, kP),
      [&](uint64_t step) {
        if (step + 1 == kWarmup) {
          faults_at = MinorFaults();
          rss_at = ResidentKiB();
        } else if (step + 1 == kWarmup + kRounds) {
          faults = (MinorFaults() - faults_at) / kRounds;
          rss_growth = ResidentKiB() - rss_at;
        }
      },
      /*keep_all=*/false);
  RecordProperty("faults_per_round", std::to_string(faults));
  RecordProperty("rss_growth_kib", std::to_string(rss_growth));
  // Per round the two peers each send and receive one message: before reuse ~8 x kPages faults
  // (encoded envelope, reassembly and its regrowth, decoded body, the next body to send).
  EXPECT_LT(faults, static_cast<long>(kPages)) << "minor faults per round";
  EXPECT_LT(rss_growth, static_cast<long>(kP * sizeof(float) / 1024))
      << "resident memory grew by more than one message over " << kRounds << " rounds";
}

}  // namespace
}  // namespace p2p::sync
