// The rendezvous service and client over real ZeroMQ sockets, then a mesh built from what the
// ranks learned.
#include "broker/rendezvous.h"

#include <gtest/gtest.h>

#include <future>
#include <thread>

#include "broker/zmq_transport.h"

namespace p2p::broker {
namespace {

using std::chrono::milliseconds;

// Runs RunRendezvous on a thread, on a free loopback port; stops and joins on destruction.
class RendezvousService {
 public:
  RendezvousService() {
    std::promise<std::string> bound;
    RendezvousOptions o;
    o.bind = "tcp://127.0.0.1:*";
    o.stop_check_interval = milliseconds(20);
    o.on_bound = [&bound](const std::string& e) { bound.set_value(e); };
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

 private:
  std::atomic<bool> stop_{false};
  std::thread thread_;
  std::string endpoint_;
  Status result_;
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

TEST(RendezvousTest, BindFailureIsReported) {
  std::atomic<bool> stop{true};
  RendezvousOptions o;
  o.bind = "tcp://256.1.1.1:1";
  Status s = RunRendezvous(o, stop);
  EXPECT_FALSE(s.ok());
}

}  // namespace
}  // namespace p2p::broker
