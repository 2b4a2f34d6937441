// End-to-end tests of --strategy mlless and --staleness (docs/strategies.md): 4 real `p2ptrain
// peer` processes over real ZeroMQ sockets (one mlless run through the real RabbitMQ) training mlp
// on the real Fashion-MNIST for 3 epochs. Every peer must end with the same parameter hash; mlless
// must stay within 1.5 points of allgather-average's final accuracy while sending fewer gradient
// bytes; bad values must fail before training with a message naming the flag.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "tests/broker/amqp_test_broker.h"
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

std::vector<std::string> TrainFlags(std::vector<std::string> extra,
                                    const std::string& epochs = std::to_string(kEpochs)) {
  std::vector<std::string> flags = {"--model",  "mlp",  "--dataset",      "fashion-mnist",
                                    "--epochs", epochs, "--peer-timeout", "3"};
  flags.insert(flags.end(), extra.begin(), extra.end());
  return flags;
}

std::vector<std::string> ZmqFlags(const test::TempDir& dir, std::vector<std::string> extra) {
  auto flags = TrainFlags(std::move(extra));
  for (std::string f : {"--transport", "zmq", "--peers"}) flags.push_back(f);
  flags.push_back(test::IpcPeers(dir, kSize));
  return flags;
}

struct Outcome {
  std::string hash;  // rank 0's final param_hash (every rank is checked against it)
  double accuracy = 0;
  double grad_bytes_raw = 0, grad_bytes_encoded = 0;  // rank 0, all epochs
};

Outcome ExpectFinishedIdentically(const std::vector<ProcessResult>& results,
                                  const test::TempDir& dir, const std::string& what) {
  Outcome out;
  for (int r = 0; r < kSize; ++r) {
    const ProcessResult& res = results[static_cast<size_t>(r)];
    EXPECT_FALSE(res.timed_out) << what << ": rank " << r << " hung";
    EXPECT_EQ(res.exit_code, 0) << what << ": rank " << r << ": " << res.err;
    const auto records = test::Records(dir, r);
    EXPECT_EQ(records.size(), kEpochs) << what << ": rank " << r;
    if (records.empty()) return out;
    const std::string hash = records.back()["param_hash"];
    if (r == 0) {
      out.hash = hash;
      out.accuracy = records.back()["test_accuracy"].get<double>();
      for (const auto& rec : records) {
        out.grad_bytes_raw += rec["grad_bytes_raw"].get<double>();
        out.grad_bytes_encoded += rec["grad_bytes_encoded"].get<double>();
      }
    }
    EXPECT_EQ(hash, out.hash) << what << ": rank " << r << " ended with different parameters";
  }
  return out;
}

const Outcome& Reference() {
  static const Outcome reference = [] {
    test::TempDir dir;
    const auto results =
        test::RunPeers(ZmqFlags(dir, {"--strategy", "allgather-average"}), kSize, dir);
    return ExpectFinishedIdentically(results, dir, "allgather-average");
  }();
  return reference;
}

TEST(MllessCliTest, MatchesAllgatherWithinOneAndAHalfPointsWithFewerBytes) {
  const Outcome& reference = Reference();
  ASSERT_FALSE(reference.hash.empty()) << "the allgather-average reference run failed";
  test::TempDir dir;
  const auto results =
      test::RunPeers(ZmqFlags(dir, {"--strategy", "mlless", "--significance", "0.01"}), kSize, dir);
  const Outcome got = ExpectFinishedIdentically(results, dir, "mlless");
  EXPECT_NEAR(got.accuracy, reference.accuracy, 0.015);
  EXPECT_EQ(got.grad_bytes_raw, reference.grad_bytes_raw);
  EXPECT_LT(got.grad_bytes_encoded, reference.grad_bytes_encoded)
      << "mlless sent as many gradient bytes as allgather-average";
  RecordProperty("mlless_accuracy", fmt::format("{:.4f}", got.accuracy));
  RecordProperty("allgather_accuracy", fmt::format("{:.4f}", reference.accuracy));
  RecordProperty("bytes_ratio", fmt::format("{:.4f}", got.grad_bytes_encoded / got.grad_bytes_raw));
}

TEST(MllessCliTest, PeersStayIdenticalOverRabbitMq) {
  const auto& broker = broker::amqp_test::Broker();
  ASSERT_TRUE(broker.error.empty()) << broker.error;
  test::TempDir dir;
  auto flags = TrainFlags({"--strategy", "mlless", "--significance", "0.05"}, "1");
  for (std::string f : {"--transport", "amqp", "--broker", broker.url.c_str(), "--run-id"}) {
    flags.push_back(f);
  }
  flags.push_back(broker::amqp_test::UniqueRunId("mlless"));
  const auto results = test::RunPeers(flags, kSize, dir);
  std::string hash;
  for (int r = 0; r < kSize; ++r) {
    EXPECT_EQ(results[size_t(r)].exit_code, 0) << "rank " << r << ": " << results[size_t(r)].err;
    const auto records = test::Records(dir, r);
    ASSERT_EQ(records.size(), 1u) << "rank " << r;
    if (r == 0) hash = records.back()["param_hash"];
    EXPECT_EQ(records.back()["param_hash"], hash) << "rank " << r;
  }
}

TEST(StalenessCliTest, PeersStayIdenticalWithStalenessOneAndTwo) {
  for (const std::string s : {"1", "2"}) {
    test::TempDir dir;
    const auto results = test::RunPeers(ZmqFlags(dir, {"--strategy", "allgather-average",
                                                       "--staleness", s, "--on-failure", "stop"}),
                                        kSize, dir);
    const Outcome got = ExpectFinishedIdentically(results, dir, "--staleness " + s);
    // Stale updates still train: far above chance (10 %).
    EXPECT_GT(got.accuracy, 0.7) << "--staleness " << s;
  }
}

// Each bad value: exit code 2 (usage) before any training, naming the flag.
TEST(MllessCliTest, BadValuesFailBeforeTrainingNamingTheFlag) {
  test::TempDir dir;
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"--strategy", "mlless", "--significance", "-0.01"}, "--significance"},
      {{"--strategy", "mlless", "--significance", "nan"}, "--significance"},
      {{"--strategy", "mlless", "--significance", "1%"}, "--significance"},
      {{"--strategy", "allgather-average", "--staleness", "3"}, "--staleness"},
      {{"--strategy", "allgather-average", "--staleness", "-1"}, "--staleness"},
      {{"--strategy", "allgather-average", "--staleness", "1"}, "--on-failure stop"},
      {{"--strategy", "mlless", "--staleness", "1", "--on-failure", "stop"}, "allgather-average"},
      {{"--strategy", "mlless", "--compression", "qsgd"}, "--compression"},
  };
  for (const auto& [extra, needle] : cases) {
    Child child(test::PeerArgs(ZmqFlags(dir, extra), kSize, 0, dir));
    const ProcessResult res = child.Wait(2min);
    const std::string what = fmt::format("{}", fmt::join(extra, " "));
    EXPECT_NE(res.exit_code, 0) << what;
    EXPECT_NE(res.exit_code, 1) << what
                                << " (a crash or runtime failure, not a usage error): " << res.err;
    EXPECT_NE(res.err.find(needle), std::string::npos) << what << ": " << res.err;
  }
}

}  // namespace
}  // namespace p2p
