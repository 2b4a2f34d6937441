// The rendezvous under attack, with real keys and real processes: a hijacker trying to take rank 0
// of someone else's run, a flood measured by the service's resident memory, and real peers
// registering signed through `p2ptrain broker --trust`.
#include "peer/rendezvous_auth.h"

#include <gtest/gtest.h>

#include <atomic>
#include <fstream>
#include <future>
#include <nlohmann/json.hpp>
#include <thread>

#include "broker/rendezvous.h"
#include "crypto/rsa.h"
#include "tests/broker/amqp_test_broker.h"
#include "tests/support/file_watch.h"
#include "tests/support/peer_runs.h"
#include "tests/support/raw_rendezvous_client.h"
#include "tests/support/run_keys.h"
#include "tests/support/subprocess.h"

namespace p2p {
namespace {

using namespace std::chrono_literals;
using broker::rendezvous::Request;
using test::Child;
using test::P2ptrainBin;

crypto::PrivateKey RankKey(int size, int rank) {
  auto key = crypto::LoadPrivateKey(test::IdentityFlags(size, rank).at(1), std::nullopt);
  if (!key.ok()) throw std::runtime_error(key.status().ToString());
  return std::move(*key);
}

std::string TrustDir(int size) { return test::IdentityFlags(size, 0).at(3); }

// A signed registration as a peer would send it, for a hostile client to replay or alter.
Request SignedRequest(const crypto::PrivateKey& key, const std::string& run, int rank, int size,
                      const std::string& endpoint) {
  Request r;
  r.run_id = run;
  r.rank = rank;
  r.size = size;
  r.endpoint = endpoint;
  const auto signer = peer::MakeRegistrationSigner(key);
  r.key_id = signer.key_id;
  r.unix_ms = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                        std::chrono::system_clock::now().time_since_epoch())
                                        .count());
  r.signature = *signer.sign(broker::rendezvous::SigningBytes(r));
  return r;
}

// RunRendezvous with the trust store of a run of `size`, on a thread.
class TrustedService {
 public:
  explicit TrustedService(int size) {
    auto trust = crypto::TrustStore::Load(TrustDir(size));
    if (!trust.ok()) throw std::runtime_error(trust.status().ToString());
    broker::RendezvousOptions o;
    o.bind = "tcp://127.0.0.1:*";
    o.stop_check_interval = 20ms;
    o.verifier =
        peer::MakeRegistrationVerifier(std::make_shared<crypto::TrustStore>(std::move(*trust)));
    std::promise<std::string> bound;
    o.on_bound = [&bound](const std::string& e) { bound.set_value(e); };
    auto endpoint = bound.get_future();
    thread_ = std::thread([this, o] { result_ = broker::RunRendezvous(o, stop_); });
    endpoint_ = endpoint.get();
  }
  ~TrustedService() {
    stop_ = true;
    thread_.join();
    EXPECT_TRUE(result_.ok()) << result_.ToString();
  }
  const std::string& endpoint() const { return endpoint_; }

 private:
  std::atomic<bool> stop_{false};
  std::thread thread_;
  std::string endpoint_;
  Status result_;
};

std::string ErrorOf(test::RawClient& client, const Request& r) {
  client.Send(broker::rendezvous::EncodeRequest(r));
  auto replies = client.Receive(1);
  return replies.empty() ? "(no reply)" : replies[0].error;
}

TEST(RendezvousAuthTest, OnlyTheKeyHoldingRankZeroCanReRegisterIt) {
  TrustedService service(3);
  const crypto::PrivateKey k0 = RankKey(3, 0), k1 = RankKey(3, 1), k2 = RankKey(3, 2);
  const auto s0 = peer::MakeRegistrationSigner(k0);
  // Honest rank 0 registers; the run is incomplete, so it times out but stays registered.
  auto first = broker::RegisterWithRendezvous(
      service.endpoint(), "run-a", 0, 3, "tcp://127.0.0.1:1000", broker::DeadlineIn(300ms), &s0);
  EXPECT_EQ(first.status().code(), StatusCode::kTimeout) << first.status().ToString();

  test::RawClient hijacker(service.endpoint(), "127.0.0.2");
  const std::string evil = "tcp://127.0.0.2:666";
  Request unsigned_r;
  unsigned_r.run_id = "run-a";
  unsigned_r.rank = 0;
  unsigned_r.size = 3;
  unsigned_r.endpoint = evil;
  EXPECT_NE(ErrorOf(hijacker, unsigned_r).find("only registrations signed"), std::string::npos);
  // Signed by an insider's trusted key (rank 1's): the rank is held by another key.
  EXPECT_NE(ErrorOf(hijacker, SignedRequest(k1, "run-a", 0, 3, evil)).find("held by key"),
            std::string::npos);
  // The honest key's signature moved onto another endpoint.
  Request moved = SignedRequest(k0, "run-a", 0, 3, "tcp://127.0.0.1:1000");
  moved.endpoint = evil;
  EXPECT_NE(ErrorOf(hijacker, moved).find("does not verify"), std::string::npos);
  // A key outside the trust store.
  auto outsider = crypto::PrivateKey::Generate(2048);
  ASSERT_TRUE(outsider.ok());
  EXPECT_NE(ErrorOf(hijacker, SignedRequest(*outsider, "run-a", 0, 3, evil)).find("not in"),
            std::string::npos);

  // Ranks 1 and 2 complete the run; rank 0 is still the honest endpoint.
  const auto s1 = peer::MakeRegistrationSigner(k1), s2 = peer::MakeRegistrationSigner(k2);
  auto r2 = std::async(std::launch::async, [&] {
    return broker::RegisterWithRendezvous(service.endpoint(), "run-a", 2, 3, "tcp://127.0.0.1:1002",
                                          broker::DeadlineIn(30s), &s2);
  });
  auto r1 = broker::RegisterWithRendezvous(service.endpoint(), "run-a", 1, 3,
                                           "tcp://127.0.0.1:1001", broker::DeadlineIn(30s), &s1);
  ASSERT_TRUE(r1.ok()) << r1.status().ToString();
  ASSERT_TRUE(r2.get().ok());
  EXPECT_EQ((*r1)[0], "tcp://127.0.0.1:1000");
}

// The scenario of the report: the hijacker registers rank 0 before the real rank 0 does.
// Against an unauthenticated rendezvous the real rank 0 is then refused and the run fails; with
// --trust the hijacker is refused and the real peers train.
TEST(RendezvousAuthTest, RealPeersTrainThroughATrustedRendezvousAHijackerRegisteredFirst) {
  const int port = broker::amqp_test::FreePort();
  const std::string service = fmt::format("tcp://127.0.0.1:{}", port);
  Child rendezvous({P2ptrainBin(), "broker", "--bind", service, "--trust", TrustDir(3)});
  ASSERT_TRUE(test::WaitForFile(
      rendezvous.err_path(),
      [&] { return test::ReadFile(rendezvous.err_path()).find("listening") != std::string::npos; },
      60s));

  test::RawClient hijacker(service, "127.0.0.2");
  Request grab;
  grab.run_id = "trusted-run";
  grab.rank = 0;
  grab.size = 3;
  grab.endpoint = "tcp://127.0.0.2:666";
  EXPECT_NE(ErrorOf(hijacker, grab).find("only registrations signed"), std::string::npos);

  test::TempDir dir;
  const auto common = test::RendezvousRunFlags(port, "trusted-run", 60);
  // RunPeers adds the per-rank flags: size, rank, metrics in `dir`, rank r's identity.
  const std::vector<test::ProcessResult> results = test::RunPeers(common, 3, dir);
  std::string hash;
  for (int r = 0; r < 3; ++r) {
    const test::ProcessResult& result = results[r];
    EXPECT_EQ(result.exit_code, 0) << "rank " << r << ": " << result.err;
    const auto lines = test::ReadLines(dir.File(fmt::format("rank-{}.jsonl", r)));
    ASSERT_EQ(lines.size(), 1u) << "rank " << r;
    const std::string h = nlohmann::json::parse(lines[0])["param_hash"];
    if (hash.empty()) hash = h;
    EXPECT_EQ(h, hash) << "rank " << r;
  }
  rendezvous.Kill(SIGTERM);
  const auto stopped = rendezvous.Wait(30s);
  EXPECT_EQ(stopped.exit_code, 0) << stopped.err;
  EXPECT_NE(stopped.err.find("refused a request from 127.0.0.2 (unsigned)"), std::string::npos)
      << stopped.err;
  EXPECT_NE(stopped.err.find("run 'trusted-run' complete"), std::string::npos) << stopped.err;
}

size_t RssKiB(int pid) {
  std::ifstream in(fmt::format("/proc/{}/status", pid));
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoul(line.substr(6));
  }
  return 0;
}

// The flood of the report against the real `p2ptrain broker` with its default memory limits and
// no rate limit: 1,200 registrations of runs of 4096 ranks from 8 addresses (the old service grew
// by ~250 KB per run and then refused every new run). Its memory stays bounded and an honest run
// is served.
TEST(RendezvousAuthTest, AFloodedBrokerStaysSmallAndServesAnHonestRun) {
  const int port = broker::amqp_test::FreePort();
  const std::string service = fmt::format("tcp://127.0.0.1:{}", port);
  // No rate limit: the memory bound must hold even when every request is processed.
  Child rendezvous(
      {P2ptrainBin(), "broker", "--bind", service, "--rate", "1000000", "--burst", "1000000"});
  ASSERT_TRUE(test::WaitForFile(
      rendezvous.err_path(),
      [&] { return test::ReadFile(rendezvous.err_path()).find("listening") != std::string::npos; },
      60s));
  const size_t before = RssKiB(rendezvous.pid());
  std::vector<std::unique_ptr<test::RawClient>> attackers;
  for (int a = 0; a < 8; ++a) {
    attackers.push_back(
        std::make_unique<test::RawClient>(service, fmt::format("127.0.0.{}", 2 + a)));
    for (int i = 0; i < 150; ++i) {
      attackers.back()->Send(test::BigRegistration(fmt::format("flood{}", a), i));
    }
  }
  for (auto& a : attackers) a->Sync();
  const size_t after = RssKiB(rendezvous.pid());
  std::printf("rendezvous RSS: %zu KiB idle, %zu KiB after 1,200 flood registrations\n", before,
              after);
  RecordProperty("rss_before_kib", static_cast<int>(before));
  RecordProperty("rss_after_kib", static_cast<int>(after));
  EXPECT_LT(after, before + 32 * 1024) << "the flood grew the rendezvous by more than 32 MiB";

  std::vector<Result<std::vector<std::string>>> lists(2, Internal("not run"));
  std::thread other([&] {
    lists[1] = broker::RegisterWithRendezvous(service, "honest", 1, 2, "tcp://127.0.0.1:2",
                                              broker::DeadlineIn(60s));
  });
  lists[0] = broker::RegisterWithRendezvous(service, "honest", 0, 2, "tcp://127.0.0.1:1",
                                            broker::DeadlineIn(60s));
  other.join();
  ASSERT_TRUE(lists[0].ok()) << lists[0].status().ToString();
  ASSERT_TRUE(lists[1].ok()) << lists[1].status().ToString();
  rendezvous.Kill(SIGTERM);
  const auto stopped = rendezvous.Wait(30s);
  EXPECT_EQ(stopped.exit_code, 0) << stopped.err;
  // Thousands of refusals, a handful of log lines.
  size_t lines = 0;
  for (char c : stopped.err) lines += c == '\n';
  EXPECT_LT(lines, 60u) << stopped.err;
}

}  // namespace
}  // namespace p2p
