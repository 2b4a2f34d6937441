// The process backend with real function processes (p2ptrain-function) and real failures.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <filesystem>
#include <thread>

#include "common/stop_signal.h"
#include "ml/model.h"
#include "serverless_offload/param_store.h"
#include "serverless_offload/pool.h"
#include "tests/offload/pool_fixture.h"
#include "tests/support/file_watch.h"
#include "tests/support/subprocess.h"

namespace p2p::offload {
namespace {

PoolOptions Options(std::vector<std::string> command, int functions = 2) {
  PoolOptions o;
  o.functions = functions;
  o.command = std::move(command);
  o.timeout_s = 30;
  o.retries = 1;
  return o;
}

class AverageOfFunctions : public ::testing::TestWithParam<int> {};

TEST_P(AverageOfFunctions, EqualsTheInProcessGradient) {
  const int k = GetParam();
  Fixture f = Fixture::Make(40);
  f.model->ComputeGradient(f.x, f.y);
  const std::vector<float> local(f.model->Grads().begin(), f.model->Grads().end());

  for (bool warm : {false, true}) {
    PoolOptions o = Options({FunctionBin()}, k);
    o.warm = warm;
    auto pool = MakeFunctionPool(o);
    ASSERT_TRUE(pool.ok()) << pool.status().ToString();
    // Twice, so the warm pool serves the second round from kept processes.
    for (int round = 0; round < 2; ++round) {
      auto tasks = f.Tasks(k);
      std::vector<uint64_t> expected;
      for (const auto& t : tasks) expected.push_back(t.y.size());
      auto results = (*pool)->RunAll(std::move(tasks));
      ASSERT_TRUE(results.ok()) << results.status().ToString();
      ExpectMeanEquals(*results, expected, local);
    }
    const PoolStats& s = (*pool)->stats();
    EXPECT_EQ(s.invocations, uint64_t(2 * k));
    EXPECT_EQ(s.failures, 0u);
    EXPECT_EQ(s.latencies_ms.size(), size_t(2 * k));
    EXPECT_GT(s.gb_seconds, 0.0);
    if (warm) {
      EXPECT_EQ(s.cold_starts, uint64_t(k));
      EXPECT_EQ(s.warm_starts, uint64_t(k));
    } else {
      EXPECT_EQ(s.cold_starts, uint64_t(2 * k));
    }
  }
}

INSTANTIATE_TEST_SUITE_P(K, AverageOfFunctions, ::testing::Values(1, 2, 4));

// More tasks than functions: each warm process serves several tasks of one call, and results a
// caller still holds from an earlier call must not be overwritten by later tasks (the gradients
// travel in shared slots that results view, see docs/offload.md).
TEST(ProcessPoolTest, SharedSlotsKeepEveryResultIntactAcrossTasksAndCalls) {
  Fixture f = Fixture::Make(48);
  const std::vector<float> local = f.LocalGradient();
  PoolOptions o = Options({FunctionBin()}, 2);
  o.warm = true;
  auto pool = MakeFunctionPool(o);
  ASSERT_TRUE(pool.ok()) << pool.status().ToString();
  std::vector<uint64_t> expected(6, 8);
  auto first = (*pool)->RunAll(f.Tasks(6));
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  const std::vector<TaskResult> kept = std::move(*first);
  std::vector<std::vector<float>> copies;
  for (const auto& r : kept) copies.emplace_back(r.values().begin(), r.values().end());
  // A second call at other parameters while the first call's results are alive.
  std::vector<float> moved(f.model->Params().begin(), f.model->Params().end());
  for (float& p : moved) p = -p;
  auto v2 = f.store.Publish(moved);
  ASSERT_TRUE(v2.ok());
  f.version = *v2;
  std::copy(moved.begin(), moved.end(), f.model->Params().begin());
  const std::vector<float> local2 = f.LocalGradient();
  auto second = (*pool)->RunAll(f.Tasks(6));
  ASSERT_TRUE(second.ok()) << second.status().ToString();
  ExpectMeanEquals(*second, expected, local2);
  for (size_t i = 0; i < kept.size(); ++i) {
    EXPECT_EQ(std::vector<float>(kept[i].values().begin(), kept[i].values().end()), copies[i]);
  }
  ExpectMeanEquals(kept, expected, local);
  EXPECT_EQ((*pool)->stats().cold_starts, 2u);
}

// The peer sums a fan-out round's results batch by batch (peer/offload.cc); that must give the
// same bits as one WeightedMean over all of them.
TEST(WeightedSumTest, ResultByResultGivesWeightedMeansBits) {
  std::vector<TaskResult> results(7);
  std::vector<uint64_t> expected;
  for (size_t i = 0; i < results.size(); ++i) {
    results[i].id = i + 1;
    results[i].samples = 3 + i * 5;  // unequal weights
    results[i].loss_sum = 0.5 * double(i);
    results[i].gradient.resize(101);
    for (size_t j = 0; j < 101; ++j) results[i].gradient[j] = std::sin(float(i * 101 + j)) / 3;
    expected.push_back(results[i].samples);
  }
  std::vector<float> once(101), batched(101, 123.0f);  // stale values must be overwritten
  auto loss = WeightedMean(results, expected, once);
  ASSERT_TRUE(loss.ok());
  uint64_t total = 0;
  for (uint64_t e : expected) total += e;
  WeightedSum sum(batched, total);
  for (size_t i = 0; i < results.size(); ++i) ASSERT_TRUE(sum.Add(results[i], expected[i]).ok());
  EXPECT_EQ(batched, once);
  EXPECT_EQ(sum.loss_sum(), *loss);
  // A result for another sample count than its task is refused.
  EXPECT_EQ(sum.Add(results[0], 999).code(), StatusCode::kDataLoss);
}

Status RunWith(std::vector<std::string> command, PoolOptions o, PoolStats* stats = nullptr) {
  Fixture f = Fixture::Make(8);
  o.command = std::move(command);
  P2P_ASSIGN_OR_RETURN(auto pool, MakeFunctionPool(o));
  auto r = pool->RunAll(f.Tasks(2));
  if (stats != nullptr) *stats = pool->stats();
  return r.status();
}

TEST(ProcessPoolTest, ACrashingFunctionIsRetriedThenFailsNamingTheTaskAndSignal) {
  PoolStats stats;
  const Status s = RunWith({"/bin/sh", "-c", "kill -SEGV $$"}, Options({}), &stats);
  EXPECT_EQ(s.code(), StatusCode::kUnavailable);
  EXPECT_NE(s.message().find("gradient task"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("2 attempt(s)"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("signal 11"), std::string::npos) << s.message();
  EXPECT_GE(stats.failures, 2u);
  EXPECT_GE(stats.retries, 1u);
}

TEST(ProcessPoolTest, AHungFunctionIsKilledAtItsTimeout) {
  PoolOptions o = Options({});
  o.timeout_s = 0.3;
  o.retries = 0;
  const auto start = std::chrono::steady_clock::now();
  const Status s = RunWith({"/bin/sleep", "600"}, o);
  EXPECT_NE(s.message().find("timed out after 0.3 s"), std::string::npos) << s.message();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
}

TEST(ProcessPoolTest, AFunctionOverItsMemoryLimitFails) {
  // mlp 784-4096-4096-10: 20M parameters, 80 MB, over a 64 MB limit.
  auto model = ml::ModelOptions{.name = "mlp", .hidden = {4096, 4096}, .input = {1, 28, 28}};
  auto store = ParamStore::Create();
  ASSERT_TRUE(store.ok());
  std::vector<float> params(784 * 4096 + 4096 + 4096 * 4096 + 4096 + 4096 * 10 + 10, 0.0f);
  auto version = store->Publish(params);
  ASSERT_TRUE(version.ok());
  Task t{.id = 1,
         .model = model,
         .params_path = version->path,
         .params_version = version->version,
         .num_params = params.size(),
         .reply_to = "",
         .x = ml::Matrix::Zero(2, 784),
         .y = {0, 1}};
  PoolOptions o = Options({FunctionBin()});
  o.memory_mb = 64;
  o.retries = 1;
  auto pool = MakeFunctionPool(o);
  ASSERT_TRUE(pool.ok());
  auto r = (*pool)->RunAll({t});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("task 1"), std::string::npos) << r.status().message();
  EXPECT_EQ((*pool)->stats().failures, 2u);
  // The same task within a generous limit succeeds: the failure was the limit.
  o.memory_mb = 2048;
  auto roomy = MakeFunctionPool(o);
  ASSERT_TRUE(roomy.ok());
  EXPECT_TRUE((*roomy)->RunAll({t}).ok());
}

TEST(ProcessPoolTest, AFailedAttemptIsRetriedAndTheRetrySucceeds) {
  test::TempDir dir;
  const std::string marker = dir.File("failed-once");
  // The first invocation of each task... of the run exits 1; later ones are the real function.
  const std::string script = "if mkdir '" + marker +
                             "' 2>/dev/null; then echo boom >&2; exit 1; fi; exec '" +
                             FunctionBin() + "'";
  PoolStats stats;
  const Status s = RunWith({"/bin/sh", "-c", script}, Options({}), &stats);
  EXPECT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(stats.retries, 1u);
  EXPECT_EQ(stats.failures, 1u);
  EXPECT_EQ(stats.invocations, 3u);
}

TEST(ProcessPoolTest, AMalformedResultIsAFailure) {
  PoolOptions o = Options({});
  o.retries = 0;
  const Status s = RunWith({"/bin/sh", "-c", "cat >/dev/null; echo garbage-garbage"}, o);
  EXPECT_NE(s.message().find("malformed result"), std::string::npos) << s.message();
}

// SIGTERM while functions compute (common/stop_signal.h): RunAll returns at once with an error
// naming the signal, and every running function process has been killed and reaped.
TEST(ProcessPoolTest, ASigtermCancelsTheRunningFunctionsAndReapsThem) {
  ASSERT_TRUE(InstallStopSignals(std::chrono::milliseconds(0)).ok());
  test::TempDir dir;
  const std::string pids = dir.File("pids");
  // Each function records its pid and hangs: only the stop can end this RunAll (its timeout is
  // far beyond the test's).
  PoolOptions o = Options({"/bin/sh", "-c", "echo $$ >> '" + pids + "'; exec /bin/sleep 3600"});
  o.timeout_s = 3600;
  std::thread stopper([&] {
    if (test::WaitForLines(pids, 2, std::chrono::minutes(2))) ::kill(::getpid(), SIGTERM);
  });
  const Status s = RunWith(o.command, o);
  stopper.join();
  EXPECT_EQ(s.code(), StatusCode::kUnavailable) << s.ToString();
  EXPECT_NE(s.message().find("stopped by SIGTERM while 2 function process(es) computed"),
            std::string::npos)
      << s.message();
  for (const auto& line : test::ReadLines(pids)) {
    const int pid = std::stoi(line);
    // Reaped, not a zombie: the pid is gone (a zombie would still answer kill 0).
    EXPECT_EQ(::kill(pid, 0), -1) << "function " << pid << " was not reaped";
    EXPECT_EQ(errno, ESRCH);
  }
  ResetStopSignalForTesting();
}

TEST(ProcessPoolTest, BadOptionsNameTheFlag) {
  PoolOptions o;
  o.functions = 0;
  EXPECT_NE(MakeFunctionPool(o).status().message().find("--functions"), std::string::npos);
  o = PoolOptions{};
  o.memory_mb = 1;
  EXPECT_NE(MakeFunctionPool(o).status().message().find("--fn-memory"), std::string::npos);
  o = PoolOptions{};
  o.backend = "lambda";
  EXPECT_EQ(MakeFunctionPool(o).status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace p2p::offload
