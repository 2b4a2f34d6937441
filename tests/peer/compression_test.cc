// End-to-end tests of gradient compression (`p2ptrain peer --compression`): real peer processes
// over ZeroMQ ipc:// sockets. Accuracy on the real Fashion-MNIST against the uncompressed run;
// every codec through the real wire path; configuration errors.
//
// Peers run with --insecure: authentication is orthogonal to the codec (security_test covers it)
// and its handshake would only add time here.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>

#include "peer/checkpoint.h"
#include "tests/support/file_watch.h"
#include "tests/support/peer_files.h"
#include "tests/support/subprocess.h"

namespace p2p {
namespace {

using test::IpcPeers;
using test::Records;

using test::Child;
using test::P2ptrainBin;
using test::ProcessResult;
using namespace std::chrono_literals;

std::vector<std::string> PeerArgs(const std::vector<std::string>& common, int size, int rank,
                                  const test::TempDir& dir) {
  std::vector<std::string> argv = {P2ptrainBin(),
                                   "peer",
                                   "--size",
                                   std::to_string(size),
                                   "--rank",
                                   std::to_string(rank),
                                   "--threads",
                                   "1",
                                   "--progress",
                                   "off",
                                   "--insecure",
                                   "--metrics",
                                   dir.File("rank-" + std::to_string(rank) + ".jsonl")};
  argv.insert(argv.end(), common.begin(), common.end());
  return argv;
}

// Runs `size` peers with `flags` (plus --peers) in a fresh directory; expects every one to finish
// with `epochs` records and the same final parameters. Returns rank 0's records.
std::vector<nlohmann::json> RunAndAgree(std::vector<std::string> flags, int size, size_t epochs) {
  test::TempDir dir;
  flags.insert(flags.end(), {"--peers", IpcPeers(dir, size)});
  std::vector<std::unique_ptr<Child>> children;
  for (int r = 0; r < size; ++r) {
    children.push_back(std::make_unique<Child>(PeerArgs(flags, size, r, dir)));
  }
  std::string hash;
  for (int r = 0; r < size; ++r) {
    const ProcessResult result = children[r]->Wait(5min);
    EXPECT_EQ(result.exit_code, 0) << "rank " << r << ": " << result.err;
    const auto records = Records(dir, r);
    EXPECT_EQ(records.size(), epochs) << "rank " << r;
    if (records.empty()) continue;
    const std::string h = records.back()["param_hash"];
    if (hash.empty()) hash = h;
    EXPECT_EQ(h, hash) << "rank " << r << " ended with different parameters";
  }
  return Records(dir, 0);
}

const std::vector<std::string> kFashionMlp = {"--model",  "mlp", "--dataset",      "fashion-mnist",
                                              "--epochs", "2",   "--peer-timeout", "120"};

std::vector<std::string> With(std::vector<std::string> flags,
                              const std::vector<std::string>& more) {
  flags.insert(flags.end(), more.begin(), more.end());
  return flags;
}

// The acceptance runs: 4 peers, mlp, Fashion-MNIST, 2 epochs. qsgd 8-bit within 1 point
// of the uncompressed run's test accuracy, top-k 1% (with momentum correction, docs/codecs.md)
// within 2 points.
TEST(CompressionTest, FourPeersOnFashionMnistKeepTheirAccuracy) {
  // The uncompressed baseline on allgather-average (reduce-scatter's uncompressed average is the
  // same bits); qsgd runs on reduce-scatter-average, topk on allgather-average (auto's choices).
  const auto none = RunAndAgree(With(kFashionMlp, {"--strategy", "allgather-average"}), 4, 2);
  // A bare --compression is the study's flag: qsgd with 8-bit levels.
  const auto qsgd = RunAndAgree(With(kFashionMlp, {"--compression"}), 4, 2);
  const auto topk = RunAndAgree(
      With(kFashionMlp, {"--momentum", "0", "--compression", "topk:momentum=0.9"}), 4, 2);
  ASSERT_EQ(none.size(), 2u);
  ASSERT_EQ(qsgd.size(), 2u);
  ASSERT_EQ(topk.size(), 2u);

  const double baseline = none[1]["test_accuracy"];
  EXPECT_GT(baseline, 0.80);  // the comparison means something
  EXPECT_GE(qsgd[1]["test_accuracy"].get<double>(), baseline - 0.01);
  EXPECT_GE(topk[1]["test_accuracy"].get<double>(), baseline - 0.02);

  // Per-epoch codec metrics (docs/metrics.md).
  EXPECT_EQ(none[1]["compression"], "none");
  EXPECT_EQ(qsgd[1]["compression"], "qsgd:bits=8,bucket=0,ef=0");
  EXPECT_EQ(topk[1]["compression"], "topk:ef=1,momentum=0.9,ratio=0.01");
  const uint64_t raw = none[1]["grad_bytes_raw"];
  EXPECT_EQ(raw % (4 * 211), 0u) << "4 bytes per parameter, 211 rounds";
  for (const auto* records : {&none, &qsgd, &topk}) {
    const auto& r = (*records)[1];
    EXPECT_EQ(r["grad_bytes_raw"].get<uint64_t>(), raw);
    EXPECT_GT(r["encode_s"].get<double>(), 0.0);
    EXPECT_GT(r["decode_s"].get<double>(), 0.0);
    EXPECT_NEAR(r["compression_ratio"].get<double>(),
                double(raw) / r["grad_bytes_encoded"].get<double>(), 1e-9);
  }
  EXPECT_NEAR(none[1]["compression_ratio"].get<double>(), 1.0, 1e-4);
  EXPECT_GT(qsgd[1]["compression_ratio"].get<double>(), 3.5);   // 9 bits per 32
  EXPECT_GT(topk[1]["compression_ratio"].get<double>(), 45.0);  // 8 bytes per 100 x 4
  // What the transport carried shrank accordingly.
  EXPECT_LT(qsgd[1]["bytes_sent"].get<double>(), none[1]["bytes_sent"].get<double>() / 3.4);
  EXPECT_LT(topk[1]["bytes_sent"].get<double>(), none[1]["bytes_sent"].get<double>() / 40);
}

// The codec's error-feedback residual and momentum-correction velocity go into the checkpoints:
// two top-k peers stopped after epoch 1 and resumed end with the same bits as a run that never
// stopped; resuming with another --compression is refused instead of silently dropping them.
TEST(CompressionTest, ResumingARunWithErrorFeedbackIsBitExact) {
  const std::vector<std::string> flags = {"--dataset",  "synthetic", "--synthetic-train", "2000",
                                          "--model",    "mlp",       "--hidden",          "32",
                                          "--momentum", "0",         "--peer-timeout",    "60"};
  const std::vector<std::string> topk = {"--compression", "topk:momentum=0.9"};
  // Both ranks of one run in `dir` (checkpoints in dir/ckpt-<r>); rank 0's last record.
  auto run = [&](const test::TempDir& dir, std::vector<std::string> more, int expect_exit) {
    std::vector<std::unique_ptr<Child>> children;
    for (int r = 0; r < 2; ++r) {
      auto args = PeerArgs(With(flags, more), 2, r, dir);
      args.insert(args.end(), {"--peers", IpcPeers(dir, 2), "--checkpoint-dir",
                               dir.File("ckpt-" + std::to_string(r))});
      children.push_back(std::make_unique<Child>(args));
    }
    std::string err;
    for (auto& c : children) {
      const ProcessResult result = c->Wait(3min);
      EXPECT_EQ(result.exit_code, expect_exit) << result.err;
      err += result.err;
    }
    return err;
  };
  test::TempDir straight, stopped, switched;
  run(straight, With(topk, {"--epochs", "2"}), 0);
  run(stopped, With(topk, {"--epochs", "1"}), 0);
  auto ckpt = peer::LoadCheckpoint(stopped.File("ckpt-0"));
  ASSERT_TRUE(ckpt.ok()) << ckpt.status().ToString();
  ASSERT_EQ(ckpt->sync_state.size(), 2u);  // residual and velocity
  EXPECT_FALSE(ckpt->sync_state[0].empty());
  EXPECT_EQ(ckpt->sync_state[1].size(), ckpt->sync_state[0].size());
  run(stopped, With(topk, {"--epochs", "2", "--resume"}), 0);
  EXPECT_EQ(Records(stopped, 0).back()["param_hash"], Records(straight, 0).back()["param_hash"]);
  EXPECT_EQ(Records(stopped, 1).back()["param_hash"], Records(straight, 1).back()["param_hash"]);

  // The same checkpoints resumed without the codec: a clear refusal.
  for (int r = 0; r < 2; ++r) {
    std::filesystem::copy(stopped.File("ckpt-" + std::to_string(r)),
                          switched.File("ckpt-" + std::to_string(r)));
  }
  // Exit 2: the flags do not fit the checkpoint (a usage error).
  const std::string err = run(switched, {"--epochs", "3", "--resume", "--compression", "none"}, 2);
  EXPECT_NE(err.find("keeps no error-feedback state"), std::string::npos) << err;
}

// Every codec through real processes and the real envelope (msgpack codec info, ZeroMQ): the
// peers agree bit for bit and report the canonical configuration.
TEST(CompressionTest, EveryCodecTrainsAndThePeersAgree) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"fp16", "fp16:ef=0"},
      {"qsgd:bits=4,bucket=512", "qsgd:bits=4,bucket=512,ef=0"},
      {"qsgd-elias:code=omega", "qsgd-elias:bits=8,bucket=0,code=omega,ef=0,order=0"},
      {"qsgd-linf:bits=7", "qsgd-linf:bits=7,bucket=0,ef=0"},
      {"uint8:mode=meanstd", "uint8:ef=0,k=6,mode=meanstd"},
      {"topk:ratio=0.1", "topk:ef=1,momentum=0,ratio=0.1"},
  };
  for (const auto& [spec, canonical] : cases) {
    SCOPED_TRACE(spec);
    const auto records =
        RunAndAgree({"--dataset", "synthetic", "--synthetic-train", "3000", "--model", "logreg",
                     "--epochs", "1", "--lr", "0.1", "--peer-timeout", "30", "--compression", spec},
                    3, 1);
    ASSERT_EQ(records.size(), 1u);
    EXPECT_EQ(records[0]["compression"], canonical);
    EXPECT_GT(records[0]["compression_ratio"].get<double>(), 1.9);
    EXPECT_LT(records[0]["val_loss"].get<double>(), 1.5);  // it learned: ln(10) = 2.3 at the start
  }
  // The shorthand flags set the same parameters as the spec.
  const auto flags =
      RunAndAgree({"--dataset", "synthetic", "--synthetic-train", "2000", "--model", "logreg",
                   "--epochs", "1", "--peer-timeout", "30", "--compression", "qsgd-elias",
                   "--qsgd-bits", "4", "--qsgd-bucket", "128"},
                  2, 1);
  ASSERT_EQ(flags.size(), 1u);
  EXPECT_EQ(flags[0]["compression"], "qsgd-elias:bits=4,bucket=128,code=gamma,ef=0,order=0");
}

TEST(CompressionTest, PeersWithDifferentCodecsRefuseToStart) {
  test::TempDir dir;
  const std::string peers = IpcPeers(dir, 2);
  std::vector<std::unique_ptr<Child>> children;
  for (int r = 0; r < 2; ++r) {
    children.push_back(std::make_unique<Child>(
        PeerArgs({"--dataset", "synthetic", "--model", "logreg", "--peers", peers, "--compression",
                  r == 0 ? "qsgd" : "qsgd:bits=4", "--peer-timeout", "30"},
                 2, r, dir)));
  }
  for (auto& c : children) {
    const auto result = c->Wait(1min);
    EXPECT_EQ(result.exit_code, 2) << result.err;
    EXPECT_NE(result.err.find("start agreement"), std::string::npos) << result.err;
    EXPECT_NE(result.err.find("compression=qsgd:bits=4,bucket=0,ef=0"), std::string::npos)
        << result.err;
  }
}

TEST(CompressionTest, BadCompressionFlagsAreUsageErrors) {
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"--compression", "zstd"}, "--compression: unknown codec 'zstd'"},
      {{"--compression", "qsgd:bits=0"}, "bits=0 is outside [1, 16]"},
      {{"--compression", "qsgd:bucket=100"}, "multiple of 64"},
      {{"--compression", "fp16", "--qsgd-bits", "4"}, "--qsgd-bits applies to qsgd"},
      {{"--compression", "qsgd:bits=4", "--qsgd-bits", "8"}, "contradicts bits=4"},
      {{"--compression", "qsgd", "--topk-ratio", "0.1"}, "--topk-ratio applies to topk only"},
      {{"--compression", "topk", "--topk-ratio", "2"}, "--topk-ratio"},
      {{"--compression", "topk:momentum=0.9"}, "--momentum 0"},
  };
  for (const auto& [flags, expected] : cases) {
    std::vector<std::string> argv = {P2ptrainBin(), "peer",    "--dataset", "synthetic",
                                     "--size",      "2",       "--rank",    "0",
                                     "--peers",     "a:1,b:2", "--insecure"};
    argv.insert(argv.end(), flags.begin(), flags.end());
    const auto r = test::RunProcess(argv, 1min);
    EXPECT_EQ(r.exit_code, 2) << expected << ": " << r.err;
    EXPECT_NE(r.err.find(expected), std::string::npos) << r.err;
  }
}

}  // namespace
}  // namespace p2p
