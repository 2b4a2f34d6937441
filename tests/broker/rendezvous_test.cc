// The rendezvous service and client over real ZeroMQ sockets, then a mesh built from what the
// ranks learned.
#include "broker/rendezvous.h"

#include <gtest/gtest.h>

#include <condition_variable>
#include <future>
#include <mutex>
#include <optional>
#include <thread>

#include "broker/envelope.h"
#include "broker/rendezvous_wire.h"
#include "broker/zmq_endpoint.h"
#include "broker/zmq_transport.h"
#include "broker/zmq_util.h"
#include "tests/support/raw_rendezvous_client.h"

namespace p2p::broker {
namespace {

using test::BigRegistration;
using test::RawClient;

using std::chrono::milliseconds;

// Runs RunRendezvous on a thread, on a free loopback port; stops and joins on destruction.
class RendezvousService {
 public:
  explicit RendezvousService(const std::function<void(RendezvousOptions&)>& configure = {}) {
    std::promise<std::string> bound;
    RendezvousOptions o;
    o.bind = "tcp://127.0.0.1:*";
    o.stop_check_interval = milliseconds(20);
    o.on_bound = [&bound](const std::string& e) { bound.set_value(e); };
    o.on_stats = [this](const rendezvous::RegistryStats& s) {
      std::lock_guard lock(mu_);
      max_registrations_ = std::max(max_registrations_, s.registrations);
      max_runs_ = std::max(max_runs_, s.runs);
      stats_ = s;
      cv_.notify_all();
    };
    o.log = [this](const std::string& line) {
      std::lock_guard lock(mu_);
      log_.push_back(line);
    };
    if (configure) configure(o);
    auto endpoint = bound.get_future();
    thread_ = std::thread([this, o] { result_ = RunRendezvous(o, stop_); });
    endpoint_ = endpoint.get();
  }
  ~RendezvousService() {
    stop_ = true;
    thread_.join();
    EXPECT_TRUE(result_.ok()) << result_.ToString();
  }
  const std::string& endpoint() const { return endpoint_; }
  // Blocks until the service reported stats satisfying `pred` (it reports after every batch of
  // requests), or fails the test at the deadline.
  rendezvous::RegistryStats WaitForStats(
      const std::function<bool(const rendezvous::RegistryStats&)>& pred) {
    std::unique_lock lock(mu_);
    EXPECT_TRUE(cv_.wait_for(lock, std::chrono::seconds(60), [&] { return pred(stats_); }))
        << "the rendezvous did not reach the expected state";
    return stats_;
  }
  size_t max_registrations() {
    std::lock_guard lock(mu_);
    return max_registrations_;
  }
  size_t max_runs() {
    std::lock_guard lock(mu_);
    return max_runs_;
  }
  std::vector<std::string> log() {
    std::lock_guard lock(mu_);
    return log_;
  }

 private:
  std::atomic<bool> stop_{false};
  std::thread thread_;
  std::string endpoint_;
  Status result_;
  std::mutex mu_;
  std::condition_variable cv_;
  rendezvous::RegistryStats stats_;
  size_t max_registrations_ = 0;
  size_t max_runs_ = 0;
  std::vector<std::string> log_;
};

void RunRanks(int size, const std::function<void(int)>& fn) {
  std::vector<std::thread> threads;
  for (int r = 0; r < size; ++r) threads.emplace_back(fn, r);
  for (std::thread& t : threads) t.join();
}

TEST(RendezvousTest, FourRanksLearnEachOthersEndpointsAndConnect) {
  RendezvousService service;
  constexpr int kSize = 4;
  std::vector<std::unique_ptr<ZmqTransport>> mesh(kSize);
  std::vector<std::vector<std::string>> lists(kSize);
  RunRanks(kSize, [&](int r) {
    ZmqTransportOptions o;
    o.rank = r;
    o.size = kSize;
    o.run_id = "run-rdv";
    o.bind_endpoint = "tcp://127.0.0.1:*";
    auto t = ZmqTransport::Create(o);
    ASSERT_TRUE(t.ok()) << t.status().ToString();
    mesh[r] = std::move(t).value();
    auto list = RegisterWithRendezvous(service.endpoint(), "run-rdv", r, kSize,
                                       mesh[r]->bound_endpoint(), DeadlineIn(milliseconds(10000)));
    ASSERT_TRUE(list.ok()) << list.status().ToString();
    lists[r] = *list;
    ASSERT_TRUE(mesh[r]->SetEndpoints(*list).ok());
    ASSERT_TRUE(mesh[r]->Connect(DeadlineIn(milliseconds(10000))).ok());
    ASSERT_TRUE(mesh[r]->Broadcast(Bytes{std::byte(r)}).ok());
    for (int i = 0; i < kSize - 1; ++i) {
      auto m = mesh[r]->Receive(DeadlineIn(milliseconds(10000)));
      ASSERT_TRUE(m.ok() && m->has_value());
      EXPECT_EQ((*m)->payload, Bytes{std::byte((*m)->from_rank)});
    }
  });
  for (int r = 0; r < kSize; ++r) {
    ASSERT_EQ(lists[r].size(), static_cast<size_t>(kSize));
    EXPECT_EQ(lists[r], lists[0]);
    EXPECT_EQ(lists[0][r], mesh[r]->bound_endpoint());
  }
}

TEST(RendezvousTest, DuplicateRankWithAnotherEndpointIsRejected) {
  RendezvousService service;
  // Rank 0 registers; the run of 2 is incomplete, so it times out but stays registered.
  auto first = RegisterWithRendezvous(service.endpoint(), "dup", 0, 2, "tcp://10.0.0.1:1000",
                                      DeadlineIn(milliseconds(300)));
  EXPECT_EQ(first.status().code(), StatusCode::kTimeout);
  auto dup = RegisterWithRendezvous(service.endpoint(), "dup", 0, 2, "tcp://10.0.0.2:2000",
                                    DeadlineIn(milliseconds(3000)));
  ASSERT_FALSE(dup.ok());
  EXPECT_EQ(dup.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(dup.status().message().find("rank 0"), std::string::npos) << dup.status().ToString();
  EXPECT_NE(dup.status().message().find("already registered"), std::string::npos);

  auto wrong_size = RegisterWithRendezvous(service.endpoint(), "dup", 1, 3, "tcp://10.0.0.3:3000",
                                           DeadlineIn(milliseconds(3000)));
  ASSERT_FALSE(wrong_size.ok());
  EXPECT_NE(wrong_size.status().message().find("size"), std::string::npos)
      << wrong_size.status().ToString();

  // Rank 1 completes the run; the original rank 0 (same endpoint) gets the list.
  auto second = RegisterWithRendezvous(service.endpoint(), "dup", 1, 2, "10.0.0.4:4000",
                                       DeadlineIn(milliseconds(3000)));
  ASSERT_TRUE(second.ok()) << second.status().ToString();
  const std::vector<std::string> want{"tcp://10.0.0.1:1000", "tcp://10.0.0.4:4000"};
  EXPECT_EQ(*second, want);
  // Rank 0 retries with its endpoint after completion and is answered.
  auto retry = RegisterWithRendezvous(service.endpoint(), "dup", 0, 2, "tcp://10.0.0.1:1000",
                                      DeadlineIn(milliseconds(3000)));
  ASSERT_TRUE(retry.ok());
  EXPECT_EQ(*retry, want);
}

TEST(RendezvousTest, TimesOutWhenTheRunNeverCompletes) {
  RendezvousService service;
  const auto start = Clock::now();
  auto r = RegisterWithRendezvous(service.endpoint(), "lonely", 0, 3, "tcp://10.0.0.1:1",
                                  start + milliseconds(300));
  EXPECT_EQ(r.status().code(), StatusCode::kTimeout);
  EXPECT_LT(Clock::now() - start, milliseconds(1500));
}

TEST(RendezvousTest, ClientValidatesItsInputs) {
  const Deadline d = DeadlineIn(milliseconds(100));
  EXPECT_FALSE(RegisterWithRendezvous("nowhere", "run", 0, 1, "h:1", d).ok());
  EXPECT_FALSE(RegisterWithRendezvous("h:1", "", 0, 1, "h:1", d).ok());
  EXPECT_FALSE(RegisterWithRendezvous("h:1", "run", 1, 1, "h:1", d).ok());
  EXPECT_FALSE(RegisterWithRendezvous("h:1", "run", 0, 1, "bad", d).ok());
}

TEST(RendezvousTest, AFloodFromManyAddressesStaysBoundedAndAnHonestRunIsStillServed) {
  constexpr size_t kMaxRegistrations = 200;
  constexpr size_t kMaxRuns = 250;  // more than the registrations: those bind first
  constexpr size_t kPerSource = 40;
  RendezvousService service([&](RendezvousOptions& o) {
    o.limits.max_registrations = kMaxRegistrations;
    o.limits.max_runs = kMaxRuns;
    o.limits.max_per_source = kPerSource;
    o.limits.requests_per_second = 1e6;  // this test is about memory, not rate
    o.limits.burst = 1e6;
  });
  // 8 addresses x 150 registrations (1,200, as in the report), each of a run of 4096.
  std::vector<std::unique_ptr<RawClient>> attackers;
  for (int a = 0; a < 8; ++a) {
    attackers.push_back(
        std::make_unique<RawClient>(service.endpoint(), fmt::format("127.0.0.{}", 2 + a)));
    for (int i = 0; i < 150; ++i) attackers.back()->Send(BigRegistration(fmt::format("f{}", a), i));
  }
  size_t refused_full = 0;
  for (auto& a : attackers) {
    for (const auto& reply : a->Sync()) refused_full += !reply.ok;
  }
  // Each address had at most 40 held: at least 110 of its 150 were refused.
  EXPECT_GE(refused_full, 8u * (150 - kPerSource));
  auto stats = service.WaitForStats([](const auto& s) {
    auto it = s.refused.find("malformed");
    return it != s.refused.end() && it->second >= 8;
  });
  EXPECT_LE(service.max_registrations(), kMaxRegistrations);
  EXPECT_LE(service.max_runs(), kMaxRuns);
  EXPECT_EQ(stats.registrations, kMaxRegistrations);
  EXPECT_GT(stats.refused["source_full"], 0u);

  // An honest run of 3 from another address still completes.
  std::vector<Result<std::vector<std::string>>> lists(3, Internal("not run"));
  RunRanks(3, [&](int r) {
    lists[r] = RegisterWithRendezvous(service.endpoint(), "honest", r, 3,
                                      fmt::format("tcp://127.0.0.1:{}", 7000 + r),
                                      DeadlineIn(milliseconds(30000)));
  });
  for (int r = 0; r < 3; ++r) ASSERT_TRUE(lists[r].ok()) << lists[r].status().ToString();
  EXPECT_EQ((*lists[0])[2], "tcp://127.0.0.1:7002");
  EXPECT_LE(service.max_registrations(), kMaxRegistrations);

  // 1,200 refusals, but the log names each (address, reason) once.
  size_t refusal_lines = 0;
  for (const std::string& line : service.log()) {
    refusal_lines += line.find("refused a request") != std::string::npos;
  }
  EXPECT_GE(refusal_lines, 1u);
  EXPECT_LE(refusal_lines, 8u * 3);
}

TEST(RendezvousTest, EachAddressIsRateLimited) {
  RendezvousService service([](RendezvousOptions& o) {
    o.limits.burst = 10;
    o.limits.requests_per_second = 0.01;  // no token comes back during the test
  });
  RawClient attacker(service.endpoint(), "127.0.0.2");
  for (int i = 0; i < 40; ++i) attacker.Send(BigRegistration("rate", i));
  attacker.Send(Bytes{std::byte{0xc1}});
  // The first 10 are held (incomplete runs get no answer); the other 30 and the invalid one
  // are refused before they are even parsed.
  size_t limited = 0;
  for (const auto& reply : attacker.Receive(31)) {
    limited += !reply.ok && reply.error.find("too many requests") != std::string::npos;
  }
  EXPECT_EQ(limited, 31u);
  auto honest = RegisterWithRendezvous(service.endpoint(), "honest", 0, 1, "tcp://127.0.0.1:9",
                                       DeadlineIn(milliseconds(30000)));
  EXPECT_TRUE(honest.ok()) << honest.status().ToString();
}

TEST(RendezvousTest, BindFailureIsReported) {
  std::atomic<bool> stop{true};
  RendezvousOptions o;
  o.bind = "tcp://256.1.1.1:1";
  Status s = RunRendezvous(o, stop);
  EXPECT_FALSE(s.ok());
}

}  // namespace
}  // namespace p2p::broker
