// Pre-authentication denial of service on the ZeroMQ mesh (issue 17 item 1), with real
// `p2ptrain peer` processes and a hostile raw ZeroMQ client: while the peers connect, it sends a
// forged HELLO claiming another run, or takes the routing id "r1" (and answers heartbeats) before
// the real rank 1 connects, or floods chunks announcing huge messages. One unauthenticated packet
// must never stop a run: the runs complete with the same final parameters as a clean run.
#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <zmq.hpp>

#include "broker/chunking.h"
#include "tests/support/hostile_dealer.h"
#include "tests/support/run_keys.h"
#include "tests/support/subprocess.h"

namespace p2p {
namespace {

using namespace std::chrono_literals;
using test::Child;
using test::P2ptrainBin;
using ::testing::HasSubstr;

// 3 ranks, 3 epochs of 94 rounds: a few seconds of training.
const std::vector<std::string> kTraining = {
    "--dataset", "synthetic", "--synthetic-train", "20000", "--model",        "mlp",
    "--hidden",  "16",        "--epochs",          "3",     "--lr",           "0.1",
    "--threads", "1",         "--progress",        "off",   "--peer-timeout", "60"};

std::string IpcEndpoint(const test::TempDir& dir, int rank) {
  return fmt::format("ipc://{}/r{}.sock", dir.path(), rank);
}

std::vector<std::string> RankArgs(int rank, const test::TempDir& dir, bool insecure) {
  std::vector<std::string> argv = {
      P2ptrainBin(),
      "peer",
      "--size",
      "3",
      "--rank",
      std::to_string(rank),
      "--metrics",
      dir.File(fmt::format("rank-{}.jsonl", rank)),
      "--peers",
      fmt::format("{},{},{}", IpcEndpoint(dir, 0), IpcEndpoint(dir, 1), IpcEndpoint(dir, 2))};
  argv.insert(argv.end(), kTraining.begin(), kTraining.end());
  if (insecure) {
    argv.push_back("--insecure");
  } else {
    const auto identity = test::IdentityFlags(3, rank);
    argv.insert(argv.end(), identity.begin(), identity.end());
  }
  return argv;
}

struct Outcome {
  std::vector<std::string> param_hash;    // per rank, last epoch's
  std::vector<uint64_t> rejected_frames;  // per rank, summed over the epochs
  std::vector<double> peak_rss_mb;        // per rank, last epoch's
  std::vector<std::string> err;
};

Outcome Finish(std::vector<std::unique_ptr<Child>>& ranks, const test::TempDir& dir) {
  Outcome out;
  for (size_t r = 0; r < ranks.size(); ++r) {
    const test::ProcessResult result = ranks[r]->Wait(4min);
    EXPECT_EQ(result.exit_code, 0) << "rank " << r << ": " << result.err;
    out.err.push_back(result.err);
    uint64_t frames = 0;
    std::string hash;
    double peak = 0;
    const auto lines = test::ReadLines(dir.File(fmt::format("rank-{}.jsonl", r)));
    EXPECT_EQ(lines.size(), 3u) << "rank " << r;
    for (const auto& line : lines) {
      const auto record = nlohmann::json::parse(line);
      frames += record["rejected_frames"].get<uint64_t>();
      hash = record["param_hash"];
      peak = record["peak_rss_mb"].get<double>();
    }
    out.peak_rss_mb.push_back(peak);
    out.param_hash.push_back(hash);
    out.rejected_frames.push_back(frames);
  }
  return out;
}

// Ranks 0 and 2 start first; `attack` runs while they are connecting (rank 1 is not there yet, so
// they cannot have finished), then rank 1 starts.
Outcome RunWithAttack(bool insecure, const std::function<void(const test::TempDir&)>& attack) {
  test::TempDir dir;
  std::vector<std::unique_ptr<Child>> ranks(3);
  for (int r : {0, 2}) ranks[r] = std::make_unique<Child>(RankArgs(r, dir, insecure));
  if (attack) attack(dir);
  ranks[1] = std::make_unique<Child>(RankArgs(1, dir, insecure));
  return Finish(ranks, dir);
}

const std::string& CleanHash(bool insecure) {
  static std::map<bool, std::string> hashes;
  if (!hashes.contains(insecure)) {
    const Outcome clean = RunWithAttack(insecure, nullptr);
    EXPECT_EQ(clean.param_hash[0], clean.param_hash[1]);
    EXPECT_EQ(clean.param_hash[0], clean.param_hash[2]);
    hashes[insecure] = clean.param_hash[0];
  }
  return hashes[insecure];
}

using test::HostileDealer;

// Before: rank 0 exited 2 with "zmq: rank 1 is in run 'evil' of size 3".
TEST(ZmqDosTest, AForgedHelloOfAnotherRunDoesNotStopTheRun) {
  const std::string clean = CleanHash(false);
  std::unique_ptr<HostileDealer> attacker;
  const Outcome run = RunWithAttack(false, [&](const test::TempDir& dir) {
    attacker = std::make_unique<HostileDealer>(IpcEndpoint(dir, 0), "r1");
    attacker->HelloAndWaitForAck(1, 3, "evil");
  });
  for (int r = 0; r < 3; ++r) EXPECT_EQ(run.param_hash[r], clean) << "rank " << r;
  EXPECT_EQ(run.rejected_frames[0], 1u);  // the forged HELLO, in epoch 1's rejected_frames
  EXPECT_THAT(run.err[0], HasSubstr("dropped a frame (hello_mismatch)"));
  EXPECT_THAT(run.err[0], HasSubstr("rank 1 is in run 'evil' of size 3"));
}

// Before: rank 1's connections to ranks 0 and 2 were ignored (libzmq keeps the first connection
// with a routing id), so ranks 0 and 2 waited for rank 1's JOIN until --peer-timeout and failed.
TEST(ZmqDosTest, ARoutingIdSquatterDoesNotLockRankOneOut) {
  const std::string clean = CleanHash(false);
  std::vector<std::unique_ptr<HostileDealer>> squatters;
  const Outcome run = RunWithAttack(false, [&](const test::TempDir& dir) {
    for (int r : {0, 2}) {
      squatters.push_back(std::make_unique<HostileDealer>(IpcEndpoint(dir, r), "r1"));
      squatters.back()->HelloAndWaitForAck(1, 3, "p2ptrain");  // a consistent HELLO
    }
  });
  for (int r = 0; r < 3; ++r) EXPECT_EQ(run.param_hash[r], clean) << "rank " << r;
}

// With --insecure nothing is proven: the squatter's connection must still not shut the real rank
// out (each connection is its own link; see broker/zmq_links.h).
TEST(ZmqDosTest, ARoutingIdSquatterDoesNotLockRankOneOutOfAnInsecureRun) {
  const std::string clean = CleanHash(true);
  std::vector<std::unique_ptr<HostileDealer>> squatters;
  const Outcome run = RunWithAttack(true, [&](const test::TempDir& dir) {
    for (int r : {0, 2}) {
      squatters.push_back(std::make_unique<HostileDealer>(IpcEndpoint(dir, r), "r1"));
      squatters.back()->HelloAndWaitForAck(1, 3, "p2ptrain");
    }
  });
  for (int r = 0; r < 3; ++r) EXPECT_EQ(run.param_hash[r], clean) << "rank " << r;
}

// The first chunk of a forged message from rank 1 announcing the largest message a peer accepts
// (256 MiB) in one-byte chunks: 49 bytes on the wire.
std::vector<std::byte> ForgedStart(uint64_t seq) {
  const broker::ChunkHeader h{.from_rank = 1, .incarnation = 0xbad, .seq = seq};
  const std::vector<std::byte> one(1, std::byte{0x5a});
  // A genuine one-byte message in one-byte chunks, then its count (header offset 16) and total
  // (offset 40) raised to 2^28: EncodeChunks would emit every chunk of a real 256 MiB message.
  std::vector<std::byte> frame = broker::EncodeChunks(h, one, broker::kChunkHeaderBytes + 1).at(0);
  constexpr uint64_t kTotal = uint64_t{256} << 20;
  for (int i = 0; i < 4; ++i) frame[16 + i] = static_cast<std::byte>(kTotal >> (8 * i));
  for (int i = 0; i < 8; ++i) frame[40 + i] = static_cast<std::byte>(kTotal >> (8 * i));
  return frame;
}

// Before (P2PC framing, broker/chunking.cc of main): each forged start reserved and zero-filled its
// declared total, so four 33-byte frames grew a peer by 1 GiB. Now the reassembler holds what
// arrived (one byte per forged start, 16 starts per connection): rank 0's peak RSS stays with the
// others', every forged start beyond those 16 is counted, and the run's parameters are the clean
// run's.
TEST(ZmqDosTest, ForgedHugeMessageStartsKeepMemoryBoundedAndChangeNothing) {
  const std::string clean = CleanHash(false);
  constexpr int kForged = 2000;
  ASSERT_TRUE(broker::DecodeChunk(ForgedStart(0), uint64_t{256} << 20).ok());
  std::unique_ptr<HostileDealer> attacker;
  const Outcome run = RunWithAttack(false, [&](const test::TempDir& dir) {
    attacker = std::make_unique<HostileDealer>(IpcEndpoint(dir, 0), "r1-forged");
    attacker->HelloAndWaitForAck(1, 3, "p2ptrain");  // rank 0 is reading its ROUTER
    for (uint64_t seq = 0; seq < kForged; ++seq) attacker->Send(ForgedStart(seq));
    // Frames of one connection are read in order: once this ACK is back, all starts were judged.
    attacker->HelloAndWaitForAck(1, 3, "p2ptrain");
  });
  for (int r = 0; r < 3; ++r) EXPECT_EQ(run.param_hash[r], clean) << "rank " << r;
  EXPECT_GE(run.rejected_frames[0], static_cast<uint64_t>(kForged - 16));
  const double others = std::max(run.peak_rss_mb[1], run.peak_rss_mb[2]);
  EXPECT_GT(others, 1.0) << "no peak_rss_mb measured";
  EXPECT_LT(run.peak_rss_mb[0], others + 64) << "forged starts made rank 0 hold memory";
  EXPECT_THAT(run.err[0], HasSubstr("(evicted)"));
}

}  // namespace
}  // namespace p2p
