// --offload end to end: real peers whose gradient work runs in real function processes.
#include <gtest/gtest.h>
#include <signal.h>

#include <memory>
#include <nlohmann/json.hpp>

#include "broker/amqp_queue_client.h"
#include "broker/amqp_url.h"
#include "peer/checkpoint.h"
#include "tests/broker/amqp_test_broker.h"
#include "tests/support/file_watch.h"
#include "tests/support/peer_runs.h"
#include "tests/support/run_keys.h"
#include "tests/support/subprocess.h"

namespace p2p {
namespace {

using namespace std::chrono_literals;

// Two peers over ipc://, one epoch of a small mlp; returns each rank's final parameters.
std::vector<std::vector<float>> TwoPeers(const std::vector<std::string>& extra,
                                         const test::TempDir& dir) {
  const std::string peers =
      fmt::format("ipc://{}/r0.sock,ipc://{}/r1.sock", dir.path(), dir.path());
  std::vector<std::unique_ptr<test::Child>> children;
  for (int r = 0; r < 2; ++r) {
    std::vector<std::string> common = {
        "--peers",           peers,  "--dataset",        "synthetic",
        "--synthetic-train", "2000", "--model",          "mlp",
        "--hidden",          "32",   "--epochs",         "2",
        "--peer-timeout",    "60",   "--checkpoint-dir", dir.File(fmt::format("ckpt-{}", r))};
    common.insert(common.end(), extra.begin(), extra.end());
    children.push_back(std::make_unique<test::Child>(test::PeerArgs(common, 2, r, dir)));
  }
  std::vector<std::vector<float>> params;
  for (int r = 0; r < 2; ++r) {
    const auto result = children[r]->Wait(5min);
    EXPECT_EQ(result.exit_code, 0) << result.err;
    auto ckpt = peer::LoadCheckpoint(dir.File(fmt::format("ckpt-{}", r)));
    EXPECT_TRUE(ckpt.ok()) << ckpt.status().ToString();
    params.push_back(ckpt.ok() ? ckpt->params : std::vector<float>{});
  }
  return params;
}

TEST(OffloadCliTest, PeersWithOffloadTrainToTheSameParametersAsWithout) {
  test::TempDir plain_dir, offload_dir;
  const auto plain = TwoPeers({}, plain_dir);
  const auto offloaded =
      TwoPeers({"--offload", "process", "--functions", "2", "--fn-warm"}, offload_dir);
  ASSERT_EQ(plain.size(), 2u);
  ASSERT_EQ(offloaded.size(), 2u);
  EXPECT_EQ(offloaded[0], offloaded[1]);  // peers agree bit for bit, offload or not
  ASSERT_EQ(plain[0].size(), offloaded[0].size());
  float worst = 0;
  for (size_t i = 0; i < plain[0].size(); ++i) {
    worst = std::max(worst, std::abs(plain[0][i] - offloaded[0][i]));
  }
  // Only the summation order of each local gradient differs (parts vs. whole batch).
  EXPECT_LT(worst, 1e-4f);

  const auto lines = test::ReadLines(offload_dir.File("rank-0.jsonl"));
  ASSERT_EQ(lines.size(), 2u);
  const auto record = nlohmann::json::parse(lines[0]);
  // 2000 samples, 90% train, half each: 900 samples = 15 batches of 64, 2 functions per batch.
  EXPECT_EQ(record["invocations"], 30);
  EXPECT_EQ(record["fn_failures"], 0);
  EXPECT_LE(record["cold_starts"].get<int>(), 2);  // --fn-warm: then everything is warm
  EXPECT_GT(record["billed_gb_s"].get<double>(), 0.0);
  EXPECT_GT(record["function_cost_usd"].get<double>(), 0.0);
  EXPECT_GT(record["instance_cost_usd"].get<double>(), 0.0);
  EXPECT_GT(record["fn_latency_p95_ms"].get<double>(), 0.0);
}

TEST(OffloadCliTest, EveryMinibatchIsSplitAcrossTheFunctions) {
  test::TempDir dir;
  auto r = test::RunProcess({test::P2ptrainBin(), "train", "--dataset", "synthetic",
                             "--synthetic-train", "2000",  "--model",   "logreg",
                             "--epochs",          "1",     "--threads", "1",
                             "--progress",        "off",   "--offload", "process",
                             "--functions",       "3",     "--metrics", dir.File("m.jsonl")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto record = nlohmann::json::parse(test::ReadLines(dir.File("m.jsonl")).at(0));
  EXPECT_EQ(record["invocations"], 29 * 3);  // 1800 samples = 29 batches, each in 3 parts
  EXPECT_EQ(record["cold_starts"], 29 * 3);  // no --fn-warm: every invocation is a cold start
}

TEST(OffloadCliTest, SyncEveryEpochSendsEachMinibatchAsOneFunction) {
  test::TempDir dir;
  auto r = test::RunProcess({test::P2ptrainBin(),
                             "peer",
                             "--size",
                             "1",
                             "--rank",
                             "0",
                             "--insecure",  // a peer alone: nobody to authenticate
                             "--sync-every",
                             "epoch",
                             "--dataset",
                             "synthetic",
                             "--synthetic-train",
                             "2000",
                             "--model",
                             "logreg",
                             "--epochs",
                             "1",
                             "--threads",
                             "1",
                             "--progress",
                             "off",
                             "--offload",
                             "process",
                             "--functions",
                             "3",
                             "--metrics",
                             dir.File("m.jsonl")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto record = nlohmann::json::parse(test::ReadLines(dir.File("m.jsonl")).at(0));
  EXPECT_EQ(record["rounds"], 1);
  EXPECT_EQ(record["invocations"], 29);  // the study's Step Function: one per minibatch
}

TEST(OffloadCliTest, AFunctionThatKeepsFailingStopsTrainingWithTheTaskNamed) {
  test::TempDir dir;
  // A 64 MB limit the function cannot start a big model in: every attempt fails.
  auto r = test::RunProcess(
      {test::P2ptrainBin(), "train", "--dataset",    "synthetic", "--synthetic-dim", "784",
       "--model",           "mlp",   "--hidden",     "4096,4096", "--epochs",        "1",
       "--threads",         "1",     "--progress",   "off",       "--offload",       "process",
       "--fn-memory",       "64",    "--fn-retries", "1",         "--functions",     "1"},
      5min);
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_NE(r.err.find("gradient task 1 failed after 2 attempt(s)"), std::string::npos) << r.err;
}

// Two peers whose gradient work goes to two `function --serve` workers over a real RabbitMQ:
// the same parameters as the process backend, bit for bit (the same parts, the same code).
TEST(OffloadCliTest, PeersOffloadingToRemoteWorkersMatchTheProcessBackend) {
  const auto& broker = broker::amqp_test::Broker();
  ASSERT_TRUE(broker.error.empty()) << broker.error;
  const std::string queue = broker::amqp_test::UniqueRunId("fn-cli");
  std::vector<std::unique_ptr<test::Child>> workers;
  for (int i = 0; i < 2; ++i) {
    workers.push_back(std::make_unique<test::Child>(std::vector<std::string>{
        test::P2ptrainBin(), "function", "--serve", "--broker", broker.url, "--queue", queue}));
  }
  test::TempDir process_dir, amqp_dir;
  const auto local =
      TwoPeers({"--offload", "process", "--functions", "2", "--fn-warm"}, process_dir);
  const auto remote = TwoPeers(
      {"--offload", "amqp", "--functions", "2", "--fn-broker", broker.url, "--fn-queue", queue},
      amqp_dir);
  ASSERT_EQ(remote.size(), 2u);
  EXPECT_EQ(remote[0], remote[1]);
  EXPECT_EQ(remote[0], local[0]);

  const auto record = nlohmann::json::parse(test::ReadLines(amqp_dir.File("rank-0.jsonl")).at(0));
  EXPECT_EQ(record["offload"], "amqp");
  EXPECT_EQ(record["invocations"], 30);  // as with the process backend: 15 batches x 2 parts
  EXPECT_EQ(record["fn_failures"], 0);
  EXPECT_GT(record["billed_gb_s"].get<double>(), 0.0);
  for (auto& w : workers) {
    w->Kill(SIGTERM);
    const auto done = w->Wait(30s);
    EXPECT_EQ(done.exit_code, 0) << done.err;
  }
}

// `train --offload amqp` waiting for a result that never comes (the only worker is this test,
// which takes the task and hangs) gets SIGTERM or SIGINT: it stops at once with 128 + signo and
// says what was out. Before, the pool blocked in the queue client until the watchdog ended the
// process after the grace period ("no safe point reached").
class AmqpOffloadInterrupted : public ::testing::TestWithParam<int> {};

TEST_P(AmqpOffloadInterrupted, StopsWhileWaitingForAResult) {
  const int sig = GetParam();
  const auto& amqp = broker::amqp_test::Broker();
  ASSERT_TRUE(amqp.error.empty()) << amqp.error;
  const std::string queue = broker::amqp_test::UniqueRunId("fn-stop");
  test::TempDir dir;
  test::Child run(
      {test::P2ptrainBin(), "train", "--dataset",   "synthetic", "--synthetic-train", "2000",
       "--model",           "mlp",   "--hidden",    "16",        "--epochs",          "1",
       "--threads",         "1",     "--progress",  "off",       "--offload",         "amqp",
       "--functions",       "1",     "--fn-broker", amqp.url,    "--fn-queue",        queue,
       "--fn-timeout",      "600"});
  ASSERT_TRUE(test::WaitForFile(
      run.err_path(),
      [&] { return test::ReadFile(run.err_path()).find("publishing tasks") != std::string::npos; },
      2min))
      << test::ReadFile(run.err_path());
  // A hung worker: once it holds the task, the pool is waiting for its result.
  auto url = broker::ParseAmqpUrl(amqp.url);
  ASSERT_TRUE(url.ok()) << url.status().ToString();
  auto worker = broker::QueueClient::Open(*url, 0, broker::DeadlineIn(30s));
  ASSERT_TRUE(worker.ok()) << worker.status().ToString();
  ASSERT_TRUE(worker->SetPrefetch(1).ok());
  ASSERT_TRUE(worker->Consume(queue, /*exclusive=*/false).ok());
  auto task = worker->Receive(60s);  // a deadline, not a pause: returns on arrival
  ASSERT_TRUE(task.ok()) << task.status().ToString();
  ASSERT_TRUE(task->has_value()) << "no task published within 60 s";

  run.Kill(sig);
  const test::ProcessResult result = run.Wait(2min);
  EXPECT_EQ(result.exit_code, 128 + sig) << result.err;
  const std::string why = sig == SIGTERM ? "stopped by SIGTERM" : "stopped by SIGINT";
  EXPECT_NE(result.err.find(why + " while 1 offload task(s) were out on queue"), std::string::npos)
      << result.err;
  EXPECT_EQ(result.err.find("no safe point reached"), std::string::npos) << result.err;
}

INSTANTIATE_TEST_SUITE_P(Signals, AmqpOffloadInterrupted, ::testing::Values(SIGTERM, SIGINT),
                         [](const auto& info) {
                           return info.param == SIGTERM ? "SIGTERM" : "SIGINT";
                         });

}  // namespace
}  // namespace p2p
