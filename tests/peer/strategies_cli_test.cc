// End-to-end tests of the comparative study's strategies (docs/strategies.md): 4 real `p2ptrain
// peer` processes over real ZeroMQ sockets (one run through the real RabbitMQ) training mlp on
// the real Fashion-MNIST for 3 epochs. Every strategy must leave all peers with one parameter
// hash and match allgather-average's final accuracy within 0.5 points — with the mean rule they
// compute the same bits, so the hash is allgather-average's own. allreduce-master should survive a
// SIGKILL of its aggregator (rank 0), hierarchical that of a shard aggregator, at a random moment
// of the first epoch.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <thread>

#include "tests/broker/amqp_test_broker.h"
#include "tests/support/file_watch.h"
#include "tests/support/peer_files.h"
#include "tests/support/peer_runs.h"
#include "tests/support/subprocess.h"

namespace p2p {
namespace {

using namespace std::chrono_literals;
using test::Child;
using test::ProcessResult;

constexpr int kSize = 4;
constexpr size_t kEpochs = 3;

std::vector<std::string> TrainFlags(const std::string& strategy) {
  return {"--model",        "mlp",
          "--dataset",      "fashion-mnist",
          "--epochs",       std::to_string(kEpochs),
          "--strategy",     strategy,
          "--peer-timeout", "3"};
}

std::vector<std::string> ZmqFlags(const test::TempDir& dir, const std::string& strategy) {
  auto flags = TrainFlags(strategy);
  for (std::string f : {"--transport", "zmq", "--peers"}) flags.push_back(f);
  flags.push_back(test::IpcPeers(dir, kSize));
  return flags;
}

struct Outcome {
  std::string hash;  // every rank's final param_hash, when they agree
  double accuracy = 0;
};

// Every listed rank exited 0 after kEpochs epochs with the same final hash.
Outcome ExpectFinishedIdentically(const std::vector<ProcessResult>& results,
                                  const test::TempDir& dir, const std::vector<int>& ranks,
                                  const std::string& what) {
  Outcome out;
  for (int r : ranks) {
    const ProcessResult& res = results[static_cast<size_t>(r)];
    EXPECT_FALSE(res.timed_out) << what << ": rank " << r << " hung";
    EXPECT_EQ(res.exit_code, 0) << what << ": rank " << r << ": " << res.err;
    const auto records = test::Records(dir, r);
    EXPECT_EQ(records.size(), kEpochs) << what << ": rank " << r;
    if (records.empty()) return out;
    const std::string hash = records.back()["param_hash"];
    if (r == ranks.front()) {
      out.hash = hash;
      out.accuracy = records.back()["test_accuracy"].get<double>();
    }
    EXPECT_EQ(hash, out.hash) << what << ": rank " << r << " ended with different parameters";
  }
  return out;
}

// allgather-average's run, the reference of every test here (computed once).
const Outcome& Reference() {
  static const Outcome reference = [] {
    test::TempDir dir;
    const auto results = test::RunPeers(ZmqFlags(dir, "allgather-average"), kSize, dir);
    return ExpectFinishedIdentically(results, dir, {0, 1, 2, 3}, "allgather-average");
  }();
  return reference;
}

void ExpectMatchesAllgather(const std::string& strategy) {
  const Outcome& reference = Reference();
  ASSERT_FALSE(reference.hash.empty()) << "the allgather-average reference run failed";
  test::TempDir dir;
  const auto results = test::RunPeers(ZmqFlags(dir, strategy), kSize, dir);
  const Outcome got = ExpectFinishedIdentically(results, dir, {0, 1, 2, 3}, strategy);
  EXPECT_NEAR(got.accuracy, reference.accuracy, 0.005) << strategy;
  EXPECT_EQ(got.hash, reference.hash)
      << strategy << " computes the mean rule's bits in a different way than allgather-average";
}

TEST(StrategiesCliTest, AllreduceMasterMatchesAllgather) {
  ExpectMatchesAllgather("allreduce-master");
}
TEST(StrategiesCliTest, ScatterReduceMatchesAllgather) { ExpectMatchesAllgather("scatter-reduce"); }
TEST(StrategiesCliTest, HierarchicalTwoShardsMatchesAllgather) {
  ExpectMatchesAllgather("hierarchical:shards=2");
}
// 3 aggregators among 4 peers (ranks 0, 1, 2) and 3 unequal shards of the parameter vector.
TEST(StrategiesCliTest, KReduceThreeOfFourMatchesAllgather) {
  ExpectMatchesAllgather("k-reduce:k=3");
}

TEST(StrategiesCliTest, HierarchicalOverRabbitMqMatchesAllgather) {
  const auto& broker = broker::amqp_test::Broker();
  ASSERT_TRUE(broker.error.empty()) << broker.error;
  const Outcome& reference = Reference();
  test::TempDir dir;
  auto flags = TrainFlags("hierarchical:shards=2");
  for (std::string f : {"--transport", "amqp", "--broker", broker.url.c_str(), "--run-id"}) {
    flags.push_back(f);
  }
  flags.push_back(broker::amqp_test::UniqueRunId("strategies"));
  const auto results = test::RunPeers(flags, kSize, dir);
  const Outcome got = ExpectFinishedIdentically(results, dir, {0, 1, 2, 3}, "amqp hierarchical");
  EXPECT_EQ(got.hash, reference.hash);
}

TEST(StrategiesCliTest, BadStrategyNamesFailBeforeTrainingNamingTheValidOnes) {
  test::TempDir dir;
  for (const std::string bad : {"k-reduce:k=0", "hierarchical", "lambda"}) {
    Child child(test::PeerArgs(ZmqFlags(dir, bad), kSize, 0, dir));
    const ProcessResult res = child.Wait(1min);
    EXPECT_EQ(res.exit_code, 2) << bad << ": " << res.err;
    EXPECT_NE(res.err.find("--strategy"), std::string::npos) << bad << ": " << res.err;
  }
}

// An aggregator dies at a random moment of the first epoch: the survivors agree on view 1
// without it, whose members take over its role in the redone round, and they finish with
// identical parameters close to the reference.
void ExpectSurvivorsOfAggregatorKill(const std::string& strategy, int victim) {
  test::TempDir dir;
  std::vector<std::unique_ptr<Child>> children;
  for (int r = 0; r < kSize; ++r) {
    children.push_back(
        std::make_unique<Child>(test::PeerArgs(ZmqFlags(dir, strategy), kSize, r, dir)));
  }
  for (int r = 0; r < kSize; ++r) {
    ASSERT_TRUE(test::WaitForFile(
        children[r]->err_path(),
        [&] {
          return test::ReadFile(children[r]->err_path()).find("agree on the configuration") !=
                 std::string::npos;
        },
        2min))
        << "rank " << r << " never started training";
  }
  // The moment of the kill, not a wait for a peer: somewhere in the first ~second of rounds, so
  // the aggregator dies before, during or after a round's sends from run to run.
  std::random_device seed;
  std::this_thread::sleep_for(
      std::chrono::milliseconds(std::uniform_int_distribution<int>(200, 1200)(seed)));
  children[victim]->Kill(SIGKILL);
  std::vector<ProcessResult> results;
  for (auto& c : children) results.push_back(c->Wait(5min));
  EXPECT_NE(results[victim].signal, 0) << "rank " << victim << " was not killed";
  std::vector<int> survivors;
  for (int r = 0; r < kSize; ++r) {
    if (r != victim) survivors.push_back(r);
  }
  const Outcome got =
      ExpectFinishedIdentically(results, dir, survivors, strategy + " after the kill");
  const std::string view = fmt::format("all 3 live peers agree (view 1: ranks {}, {}, {})",
                                       survivors[0], survivors[1], survivors[2]);
  for (int r : survivors) {
    EXPECT_NE(results[r].out.find(view), std::string::npos) << results[r].out;
    const auto records = test::Records(dir, r);
    ASSERT_FALSE(records.empty());
    EXPECT_EQ(records.front()["members"], nlohmann::json(survivors)) << records.front().dump();
  }
  EXPECT_NEAR(got.accuracy, Reference().accuracy, 0.01)
      << "the survivors trained on 3/4 of the data after the failure; accuracy must stay close";
}

// DISABLED: with --peer-timeout 3 these need sends to live peers to go through within 750 ms (a
// quarter of it), which a 2-core machine at load 15-20 does not give: a send that times out
// marks a live rank gone, and a second view change loses quorum. Lost messages between live
// peers are now asked for again (sync/mailbox_recovery.cc), so none of these runs hangs any more;
// they pass or stop with "lost quorum". Run them with --gtest_also_run_disabled_tests.
TEST(StrategiesCliTest, DISABLED_AllreduceMasterSurvivesTheKillOfItsAggregator) {
  ExpectSurvivorsOfAggregatorKill("allreduce-master", 0);
}

// With 2 shards among 4 peers the aggregators are ranks 0 and 2; rank 2 dies.
TEST(StrategiesCliTest, DISABLED_HierarchicalSurvivesTheKillOfAShardAggregator) {
  ExpectSurvivorsOfAggregatorKill("hierarchical:shards=2", 2);
}

}  // namespace
}  // namespace p2p
