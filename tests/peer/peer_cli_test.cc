// End-to-end tests of `p2ptrain peer`: real peer processes over real ZeroMQ sockets and a real
// RabbitMQ, training on the real Fashion-MNIST.
#include <gtest/gtest.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <regex>

#include "tests/broker/amqp_test_broker.h"
#include "tests/support/file_watch.h"
#include "tests/support/peer_files.h"
#include "tests/support/peer_runs.h"
#include "tests/support/run_keys.h"
#include "tests/support/subprocess.h"

namespace p2p {
namespace {

using test::IpcPeers;
using test::Records;

using namespace std::chrono_literals;
using test::Child;
using test::P2ptrainBin;
using test::ProcessResult;

using test::PeerArgs;
using test::RunPeers;

// Every peer exited 0 and wrote `epochs` records; returns the common final parameter hash.
std::string ExpectAgreement(const std::vector<ProcessResult>& results, const test::TempDir& dir,
                            size_t epochs) {
  std::string hash;
  for (size_t r = 0; r < results.size(); ++r) {
    EXPECT_EQ(results[r].exit_code, 0) << "rank " << r << ": " << results[r].err;
    EXPECT_NE(results[r].out.find("all " + std::to_string(results.size()) + " peers agree"),
              std::string::npos)
        << results[r].out;
    const auto records = Records(dir, static_cast<int>(r));
    EXPECT_EQ(records.size(), epochs) << "rank " << r;
    if (records.empty()) continue;
    const std::string h = records.back()["param_hash"];
    if (hash.empty()) hash = h;
    EXPECT_EQ(h, hash) << "rank " << r << " ended with different parameters";
  }
  return hash;
}

const std::vector<std::string> kFashionMlp = {"--model",  "mlp", "--dataset",      "fashion-mnist",
                                              "--epochs", "1",   "--peer-timeout", "60"};

TEST(PeerCliTest, FourPeersOverZeroMqAndRabbitMqTrainIdenticallyAndBeatOnePeerAlone) {
  const auto& broker = broker::amqp_test::Broker();
  ASSERT_TRUE(broker.error.empty()) << broker.error;

  test::TempDir zmq_dir;
  auto zmq_flags = kFashionMlp;
  zmq_flags.insert(zmq_flags.end(), {"--transport", "zmq", "--peers", IpcPeers(zmq_dir, 4)});
  const std::string zmq_hash = ExpectAgreement(RunPeers(zmq_flags, 4, zmq_dir), zmq_dir, 1);

  test::TempDir amqp_dir;
  const std::string run_id = broker::amqp_test::UniqueRunId("fourpeers");
  auto amqp_flags = kFashionMlp;
  amqp_flags.insert(amqp_flags.end(),
                    {"--transport", "amqp", "--broker", broker.url, "--run-id", run_id});
  const std::string amqp_hash = ExpectAgreement(RunPeers(amqp_flags, 4, amqp_dir), amqp_dir, 1);
  // The transport must not change a single bit of the result.
  EXPECT_EQ(zmq_hash, amqp_hash);

  const auto record = Records(zmq_dir, 0).at(0);
  EXPECT_LT(record["loss"].get<double>(), 1.6);  // from ln(10) = 2.30 at initialisation
  EXPECT_GT(record["bytes_sent"].get<uint64_t>(), 0u);
  EXPECT_GT(record["bytes_received"].get<uint64_t>(), 0u);
  EXPECT_EQ(record["rounds"], 211);  // ceil(13500 / 64): one exchange per minibatch

  // One peer alone, the same number of its own steps on the same shard.
  test::TempDir alone_dir;
  auto alone = test::RunProcess({P2ptrainBin(), "train", "--model", "mlp", "--epochs", "1",
                                 "--size", "4", "--rank", "0", "--threads", "1", "--progress",
                                 "off", "--metrics", alone_dir.File("m.jsonl")});
  ASSERT_EQ(alone.exit_code, 0) << alone.err;
  const auto alone_record = nlohmann::json::parse(test::ReadLines(alone_dir.File("m.jsonl")).at(0));
  EXPECT_GT(record["test_accuracy"].get<double>(), alone_record["test_accuracy"].get<double>());

  if (!broker.node.empty()) {
    const auto queues = broker::amqp_test::Ctl("list_queues name");
    EXPECT_EQ(queues.out.find(run_id), std::string::npos) << "left behind:\n" << queues.out;
  }
}

TEST(PeerCliTest, SyncEveryEpochExchangesOncePerEpoch) {
  test::TempDir dir;
  const std::vector<std::string> flags = {
      "--dataset",      "synthetic", "--synthetic-train", "3000",          "--model", "logreg",
      "--epochs",       "2",         "--sync-every",      "epoch",         "--lr",    "0.5",
      "--peer-timeout", "30",        "--peers",           IpcPeers(dir, 3)};
  ExpectAgreement(RunPeers(flags, 3, dir), dir, 2);
  for (const auto& record : Records(dir, 1)) EXPECT_EQ(record["rounds"], 1);
  const auto records = Records(dir, 1);
  ASSERT_EQ(records.size(), 2u);
  EXPECT_LT(records[1]["val_loss"].get<double>(), records[0]["val_loss"].get<double>());
}

TEST(PeerCliTest, UnequalPartitionsStillAgree) {
  test::TempDir dir;
  const std::vector<std::string> flags = {
      "--dataset",      "synthetic", "--synthetic-train", "3000",
      "--model",        "mlp",       "--hidden",          "16",
      "--epochs",       "1",         "--partition",       "3,1",
      "--peer-timeout", "30",        "--peers",           IpcPeers(dir, 2)};
  ExpectAgreement(RunPeers(flags, 2, dir), dir, 1);
  // Both run the larger shard's number of rounds; the smaller one sends empty gradients at the end.
  EXPECT_EQ(Records(dir, 0).at(0)["rounds"], Records(dir, 1).at(0)["rounds"]);
  EXPECT_GT(Records(dir, 0).at(0)["samples"], Records(dir, 1).at(0)["samples"]);
}

// reduce-scatter-average is an implementation of the same average: a run ends with the same
// parameters, bit for bit, whichever strategy combined the gradients — here with unequal shards,
// so some rounds have peers without samples (weight 0).
TEST(PeerCliTest, BothStrategiesEndWithTheSameParameters) {
  std::vector<std::string> hashes;
  for (const std::string strategy : {"allgather-average", "reduce-scatter-average", "auto"}) {
    test::TempDir dir;
    const std::vector<std::string> flags = {"--dataset",         "synthetic",
                                            "--synthetic-train", "3000",
                                            "--model",           "mlp",
                                            "--hidden",          "33",
                                            "--epochs",          "1",
                                            "--partition",       "3,1,1",
                                            "--peer-timeout",    "30",
                                            "--strategy",        strategy,
                                            "--peers",           IpcPeers(dir, 3)};
    hashes.push_back(ExpectAgreement(RunPeers(flags, 3, dir), dir, 1));
    const std::string used = Records(dir, 0).at(0)["strategy"];
    // auto picks reduce-scatter-average for an uncompressed run of 3 peers.
    EXPECT_EQ(used, strategy == "auto" ? "reduce-scatter-average" : strategy);
  }
  EXPECT_EQ(hashes[1], hashes[0]);
  EXPECT_EQ(hashes[2], hashes[0]);
}

// kill -9 one peer mid-training with --on-failure stop: the others fail within --peer-timeout,
// naming the dead rank (the default, continue, is tests/peer/membership_cli_test.cc).
void KillOnePeerAndExpectCleanFailure(std::vector<std::string> flags, const test::TempDir& dir) {
  flags.insert(flags.end(),
               {"--dataset", "synthetic", "--synthetic-train", "20000", "--model", "mlp",
                "--epochs", "1000", "--peer-timeout", "3", "--on-failure", "stop"});
  std::vector<std::unique_ptr<Child>> children;
  for (int r = 0; r < 3; ++r)
    children.push_back(std::make_unique<Child>(PeerArgs(flags, 3, r, dir)));
  ASSERT_TRUE(test::WaitForLines(dir.File("rank-1.jsonl"), 1, 2min))
      << "rank 1 never finished an epoch";
  children[1]->Kill(SIGKILL);
  const auto start = std::chrono::steady_clock::now();
  int named_the_dead_rank = 0;
  for (int r : {0, 2}) {
    const ProcessResult result = children[r]->Wait(1min);
    EXPECT_FALSE(result.timed_out) << "rank " << r << " hung after its peer died";
    EXPECT_EQ(result.exit_code, 1) << result.err;
    EXPECT_TRUE(std::regex_search(
        result.err,
        std::regex("suspected dead|before the deadline|unreachable|did not take a frame")))
        << result.err;
    // "rank(s) 1 suspected dead", "ranks [1, 2] unreachable", or (sending a slice to it,
    // reduce-scatter) "rank 1 did not take a frame within 3000 ms". A survivor may instead first
    // notice the other survivor, which already failed and left.
    named_the_dead_rank += std::regex_search(
        result.err, std::regex(R"(rank\(s\) 1\b|ranks \[1[,\]]|rank 1 did not take)"));
  }
  EXPECT_GE(named_the_dead_rank, 1) << "no survivor named rank 1";
  // --peer-timeout 3 plus teardown; far below the test's own timeout.
  EXPECT_LT(std::chrono::steady_clock::now() - start, 20s);
}

TEST(PeerCliTest, KilledPeerOverZeroMqFailsTheOthersClearly) {
  test::TempDir dir;
  KillOnePeerAndExpectCleanFailure({"--peers", IpcPeers(dir, 3)}, dir);
}

TEST(PeerCliTest, KilledPeerOverRabbitMqFailsTheOthersAndTheyRemoveTheirQueues) {
  const auto& broker = broker::amqp_test::Broker();
  ASSERT_TRUE(broker.error.empty()) << broker.error;
  test::TempDir dir;
  const std::string run_id = broker::amqp_test::UniqueRunId("kill");
  KillOnePeerAndExpectCleanFailure(
      {"--transport", "amqp", "--broker", broker.url, "--run-id", run_id}, dir);
  if (broker.node.empty()) return;
  // The survivors deleted their queues; the dead peer's expires on its own (x-expires).
  const auto queues = broker::amqp_test::Ctl("list_queues name");
  EXPECT_EQ(queues.out.find(run_id + ".rank0"), std::string::npos) << queues.out;
  EXPECT_EQ(queues.out.find(run_id + ".rank2"), std::string::npos) << queues.out;
}

TEST(PeerCliTest, PeersFindEachOtherThroughTheRendezvous) {
  const int port = broker::amqp_test::FreePort();
  Child rendezvous({P2ptrainBin(), "broker", "--bind", fmt::format("tcp://127.0.0.1:{}", port)});
  test::TempDir dir;
  const auto flags = test::RendezvousRunFlags(port, "rendezvous-test", 30);
  ExpectAgreement(RunPeers(flags, 3, dir), dir, 1);
  rendezvous.Kill(SIGTERM);
  const auto stopped = rendezvous.Wait(30s);
  EXPECT_EQ(stopped.exit_code, 0) << stopped.err;  // a clean stop on SIGTERM
}

TEST(PeerCliTest, ASecondPeerWithTheSameRankIsRefused) {
  const auto& broker = broker::amqp_test::Broker();
  ASSERT_TRUE(broker.error.empty()) << broker.error;
  test::TempDir dir;
  const std::vector<std::string> flags = {
      "--dataset",         "synthetic",
      "--synthetic-train", "20000",
      "--model",           "mlp",
      "--epochs",          "1000",
      "--transport",       "amqp",
      "--broker",          broker.url,
      "--run-id",          broker::amqp_test::UniqueRunId("duplicate"),
      "--peer-timeout",    "30"};
  Child rank0(PeerArgs(flags, 2, 0, dir));
  Child rank1(PeerArgs(flags, 2, 1, dir));
  ASSERT_TRUE(test::WaitForLines(dir.File("rank-0.jsonl"), 1, 2min)) << "the run never started";
  test::TempDir other;
  const auto duplicate = test::RunProcess(PeerArgs(flags, 2, 0, other), 1min);
  EXPECT_EQ(duplicate.exit_code, 2) << duplicate.err;
  EXPECT_NE(duplicate.err.find("same --rank"), std::string::npos) << duplicate.err;
  // The run itself is undisturbed: it completes another epoch (then it is stopped here).
  const size_t done = test::ReadLines(dir.File("rank-0.jsonl")).size();
  EXPECT_TRUE(test::WaitForLines(dir.File("rank-0.jsonl"), done + 1, 1min));
  rank0.Kill(SIGTERM);
  rank1.Kill(SIGTERM);
}

TEST(PeerCliTest, PeersWithDifferentConfigurationsRefuseToStart) {
  test::TempDir dir;
  const std::string peers = IpcPeers(dir, 2);
  std::vector<std::unique_ptr<Child>> children;
  for (int r = 0; r < 2; ++r) {
    children.push_back(std::make_unique<Child>(
        PeerArgs({"--dataset", "synthetic", "--model", "logreg", "--peers", peers, "--lr",
                  r == 0 ? "0.1" : "0.2", "--peer-timeout", "30"},
                 2, r, dir)));
  }
  for (auto& c : children) {
    const auto result = c->Wait(1min);
    EXPECT_EQ(result.exit_code, 2) << result.err;
    EXPECT_NE(result.err.find("start agreement"), std::string::npos) << result.err;
    EXPECT_NE(result.err.find("lr=0.2"), std::string::npos) << result.err;
  }
}

TEST(PeerCliTest, BadFlagsAreUsageErrors) {
  struct Case {
    std::vector<std::string> flags;
    std::string expected;
  };
  const std::vector<Case> cases = {
      {{"--size", "2", "--rank", "2", "--peers", "a:1,b:2"}, "--rank 2 is outside 0..1"},
      {{"--size", "2", "--rank", "0", "--sync-every", "0", "--peers", "a:1,b:2"}, "--sync-every"},
      {{"--size", "2", "--rank", "0", "--transport", "amqp"}, "--run-id"},
      {{"--size", "2", "--rank", "0"}, "--peers"},
      {{"--size", "3", "--rank", "0", "--peers", "a:1,b:2"}, "--size is 3"},
      {{"--size", "2", "--rank", "0", "--compression", "zstd", "--peers", "a:1,b:2"},
       "--compression"},
  };
  for (const auto& c : cases) {
    std::vector<std::string> argv = {P2ptrainBin(), "peer", "--dataset", "synthetic", "--insecure"};
    argv.insert(argv.end(), c.flags.begin(), c.flags.end());
    const auto r = test::RunProcess(argv, 1min);
    EXPECT_EQ(r.exit_code, 2) << c.expected << ": " << r.err;
    EXPECT_NE(r.err.find(c.expected), std::string::npos) << r.err;
  }
}

TEST(PeerCliTest, UnreachableBrokerIsAClearErrorWithinTheTimeout) {
  const int port = broker::amqp_test::FreePort();
  const auto start = std::chrono::steady_clock::now();
  const auto r = test::RunProcess(
      {P2ptrainBin(), "peer", "--dataset", "synthetic", "--size", "2", "--rank", "0", "--transport",
       "amqp", "--broker", fmt::format("amqp://guest:guest@127.0.0.1:{}/", port), "--run-id",
       "unreachable", "--connect-timeout", "2", "--peer-timeout", "2", "--insecure"},
      1min);
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_NE(r.err.find(fmt::format("127.0.0.1:{}", port)), std::string::npos) << r.err;
  EXPECT_LT(std::chrono::steady_clock::now() - start, 15s);
}

TEST(PeerCliTest, WrongBrokerCredentialsAreRefusedClearly) {
  const auto& broker = broker::amqp_test::Broker();
  ASSERT_TRUE(broker.error.empty()) << broker.error;
  auto url = broker::ParseAmqpUrl(broker.url);
  ASSERT_TRUE(url.ok());
  const auto r = test::RunProcess(
      {P2ptrainBin(), "peer", "--dataset", "synthetic", "--size", "2", "--rank", "0", "--transport",
       "amqp", "--broker", fmt::format("amqp://guest:wrong-password@{}:{}/", url->host, url->port),
       "--run-id", "badcreds", "--peer-timeout", "5", "--insecure"},
      1min);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("ACCESS_REFUSED"), std::string::npos) << r.err;
}

// A peer checks its shard's header before it connects to anyone: rank 0 of 2 given rank 1's
// shard (written by a real `p2ptrain split`) exits 2 at once, naming the file and the fix.
TEST(PeerCliTest, APeerRefusesAShardWrittenForAnotherRank) {
  test::TempDir dir;
  auto split = test::RunProcess({P2ptrainBin(), "split", "--dataset", "synthetic", "--size", "2",
                                 "--out", dir.File("shards")});
  ASSERT_EQ(split.exit_code, 0) << split.err;
  const std::string shard = dir.File("shards/rank-1.shard");
  auto r = test::RunProcess(PeerArgs({"--dataset", "synthetic", "--shard", shard, "--model",
                                      "logreg", "--peers", IpcPeers(dir, 2)},
                                     2, 0, dir),
                            1min);
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("--shard " + shard +
                       " does not belong to this run: it holds rank 1's samples of 2 but this "
                       "process is rank 0"),
            std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("--shard " + dir.File("shards/rank-{rank}.shard")), std::string::npos)
      << r.err;
}

}  // namespace
}  // namespace p2p
