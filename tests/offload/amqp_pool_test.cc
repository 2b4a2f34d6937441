// The amqp backend against a real RabbitMQ with real `p2ptrain function --serve` workers.
// Every test uses its own work queue, so tests running in parallel never share workers.
#include "serverless_offload/amqp_pool.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <future>
#include <thread>

#include "tests/broker/amqp_test_broker.h"
#include "tests/offload/pool_fixture.h"
#include "tests/support/file_watch.h"

namespace p2p::offload {
namespace {

using namespace std::chrono_literals;
namespace amqp_test = broker::amqp_test;

class AmqpPoolTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!amqp_test::Broker().error.empty()) GTEST_FAIL() << amqp_test::Broker().error;
    queue_ = amqp_test::UniqueRunId("fnq");
  }

  PoolOptions Options(int functions) const {
    PoolOptions o;
    o.backend = "amqp";
    o.broker = amqp_test::Broker().url;
    o.queue = queue_;
    o.functions = functions;
    o.timeout_s = 60;
    o.retries = 1;
    return o;
  }

  // A worker serving this test's queue; returns once it is consuming.
  std::unique_ptr<test::Child> StartWorker() {
    auto w = std::make_unique<test::Child>(
        std::vector<std::string>{test::P2ptrainBin(), "function", "--serve", "--broker",
                                 amqp_test::Broker().url, "--queue", queue_, "--verbose"});
    EXPECT_TRUE(WaitForLog(*w, "serving gradient tasks"));
    return w;
  }

  static bool WaitForLog(const test::Child& child, const std::string& text) {
    return test::WaitForFile(
        child.err_path(),
        [&] { return test::ReadFile(child.err_path()).find(text) != std::string::npos; }, 60s);
  }

  std::string queue_;
};

class AmqpAverage : public AmqpPoolTest, public ::testing::WithParamInterface<int> {};

TEST_P(AmqpAverage, OfKWorkersEqualsTheInProcessGradientAndParametersGoOncePerWorker) {
  const int k = GetParam();
  auto w1 = StartWorker();
  auto w2 = StartWorker();
  Fixture f = Fixture::Make(40);
  const std::vector<float> local = f.LocalGradient();
  auto pool = MakeFunctionPool(Options(k));
  ASSERT_TRUE(pool.ok()) << pool.status().ToString();
  for (int round = 0; round < 3; ++round) {  // the same parameter version each time
    auto tasks = f.Tasks(k);
    std::vector<uint64_t> expected;
    for (const auto& t : tasks) expected.push_back(t.y.size());
    auto results = (*pool)->RunAll(std::move(tasks));
    ASSERT_TRUE(results.ok()) << results.status().ToString();
    for (int i = 0; i < k; ++i) EXPECT_EQ((*results)[i].id, uint64_t(i + 1));  // caller's ids
    ExpectMeanEquals(*results, expected, local);
  }
  const PoolStats& s = (*pool)->stats();
  EXPECT_EQ(s.invocations, uint64_t(3 * k));
  EXPECT_EQ(s.failures, 0u);
  EXPECT_EQ(s.cold_starts + s.warm_starts, uint64_t(3 * k));
  EXPECT_LE(s.cold_starts, 2u);  // each worker builds the model once
  EXPECT_LE(s.params_sent, 2u);  // ... and fetches the version once
  EXPECT_GE(s.params_sent, 1u);
  EXPECT_GT(s.gb_seconds, 0.0);

  // A new version is fetched again, and computed at the new values.
  std::vector<float> moved(f.model->Params().begin(), f.model->Params().end());
  for (float& p : moved) p *= 0.5f;
  std::copy(moved.begin(), moved.end(), f.model->Params().begin());
  auto v2 = f.store.Publish(moved);
  ASSERT_TRUE(v2.ok());
  f.version = *v2;
  const std::vector<float> local2 = f.LocalGradient();
  auto tasks = f.Tasks(k);
  std::vector<uint64_t> expected;
  for (const auto& t : tasks) expected.push_back(t.y.size());
  const uint64_t sent_before = s.params_sent;
  auto results = (*pool)->RunAll(std::move(tasks));
  ASSERT_TRUE(results.ok()) << results.status().ToString();
  ExpectMeanEquals(*results, expected, local2);
  EXPECT_GT((*pool)->stats().params_sent, sent_before);
}

INSTANTIATE_TEST_SUITE_P(K, AmqpAverage, ::testing::Values(1, 2, 4));

TEST_F(AmqpPoolTest, AWorkerKilledMidTaskHasItsTaskRedeliveredToAnother) {
  // Big enough that the gradient takes a good fraction of a second: the kill lands mid-task.
  ml::ModelOptions big{.name = "mlp", .hidden = {512, 512}, .input = {1, 28, 28}};
  Fixture f = Fixture::Make(2048, big);
  auto doomed = StartWorker();
  auto pool = MakeFunctionPool(Options(1));
  ASSERT_TRUE(pool.ok()) << pool.status().ToString();
  auto future = (*pool)->Submit(f.Tasks(1));
  ASSERT_TRUE(WaitForLog(*doomed, "received"));
  doomed->Kill(SIGKILL);
  doomed->Wait(30s);
  auto survivor = StartWorker();
  ASSERT_EQ(future.wait_for(120s), std::future_status::ready);
  auto results = future.get();
  ASSERT_TRUE(results.ok()) << results.status().ToString();
  EXPECT_TRUE((*results)[0].redelivered);
  const PoolStats& s = (*pool)->stats();
  EXPECT_EQ(s.redeliveries, 1u);
  EXPECT_EQ(s.retries, 0u);  // the broker moved the task; the pool did not need to retry
  EXPECT_EQ(s.failures, 0u);
  ExpectMeanEquals(*results, {2048}, f.LocalGradient());
}

TEST_F(AmqpPoolTest, WithoutWorkersATaskTimesOutWithAClearError) {
  PoolOptions o = Options(2);
  o.timeout_s = 0.5;
  o.retries = 1;
  auto pool = MakeFunctionPool(o);
  ASSERT_TRUE(pool.ok()) << pool.status().ToString();
  Fixture f = Fixture::Make(8);
  const auto start = std::chrono::steady_clock::now();
  auto r = (*pool)->RunAll(f.Tasks(2));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(r.status().message().find("2 attempt(s)"), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find("--serve"), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find(queue_), std::string::npos) << r.status().message();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 10s);
  EXPECT_EQ((*pool)->stats().retries, 2u);
}

TEST_F(AmqpPoolTest, AWorkerErrorIsRetriedThenFailsNamingTheTaskAndTheCause) {
  auto w = StartWorker();
  Fixture f = Fixture::Make(8);
  // Parameters of another size than the model: every worker answers with an error.
  std::vector<float> wrong(f.model->NumParams() + 3, 0.0f);
  auto v = f.store.Publish(wrong);
  ASSERT_TRUE(v.ok());
  f.version = *v;
  auto tasks = f.Tasks(1);
  tasks[0].num_params = wrong.size();
  auto pool = MakeFunctionPool(Options(1));
  ASSERT_TRUE(pool.ok()) << pool.status().ToString();
  auto r = (*pool)->RunAll(std::move(tasks));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("gradient task 1 failed after 2 attempt(s)"),
            std::string::npos)
      << r.status().message();
  EXPECT_NE(r.status().message().find("parameters"), std::string::npos) << r.status().message();
  EXPECT_EQ((*pool)->stats().failures, 2u);
}

TEST_F(AmqpPoolTest, UnreachableBrokerAndMissingFlagsAreClearErrors) {
  PoolOptions o = Options(1);
  o.broker = fmt::format("amqp://guest:guest@127.0.0.1:{}/", amqp_test::FreePort());
  auto r = MakeFunctionPool(o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(r.status().message().find("--offload amqp"), std::string::npos);
  o.broker.clear();
  EXPECT_NE(MakeFunctionPool(o).status().message().find("--fn-broker"), std::string::npos);
  o = Options(1);
  o.queue = "bad queue";
  EXPECT_NE(MakeFunctionPool(o).status().message().find("--fn-queue"), std::string::npos);
}

TEST_F(AmqpPoolTest, AWorkerStopsCleanlyOnSigtermAndRemovesItsQueue) {
  auto w = StartWorker();
  w->Kill(SIGTERM);
  const auto result = w->Wait(30s);
  EXPECT_EQ(result.exit_code, 0) << result.err;
  EXPECT_NE(result.err.find("served 0 task(s)"), std::string::npos) << result.err;
  // Its private queue (named in its first log line) is gone.
  const size_t at = result.err.find("p2ptrain.fnworker.");
  ASSERT_NE(at, std::string::npos) << result.err;
  const std::string name = result.err.substr(at, result.err.find(':', at) - at);
  if (!amqp_test::Broker().node.empty()) {
    const auto queues = amqp_test::Ctl("list_queues name");
    EXPECT_EQ(queues.out.find(name), std::string::npos) << queues.out;
  }
}

// A TCP relay in front of the broker that the test can cut, as a network failure would: every
// relayed connection is closed on both sides; new connections are still accepted.
class CuttableRelay {
 public:
  explicit CuttableRelay(int target_port) : target_port_(target_port) {
    listener_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::bind(listener_, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
    socklen_t len = sizeof(a);
    ::getsockname(listener_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    ::listen(listener_, 8);
    EXPECT_EQ(::pipe2(wake_, O_CLOEXEC), 0);
    thread_ = std::thread([this] { Run(); });
  }
  ~CuttableRelay() {
    stop_ = true;
    Wake();
    thread_.join();
    for (int fd : {listener_, wake_[0], wake_[1]}) ::close(fd);
  }
  int port() const { return port_; }
  void Cut() {
    cut_ = true;
    Wake();
  }

 private:
  void Wake() { (void)!::write(wake_[1], "x", 1); }
  void Run() {
    std::vector<std::pair<int, int>> pairs;  // client, broker
    char buf[64 << 10];
    while (!stop_) {
      std::vector<pollfd> fds = {{listener_, POLLIN, 0}, {wake_[0], POLLIN, 0}};
      for (auto [c, b] : pairs) {
        fds.push_back({c, POLLIN, 0});
        fds.push_back({b, POLLIN, 0});
      }
      if (::poll(fds.data(), fds.size(), -1) < 0) continue;
      if (fds[1].revents & POLLIN) (void)!::read(wake_[0], buf, sizeof(buf));
      if (cut_.exchange(false)) {
        for (auto [c, b] : pairs) {
          ::close(c);
          ::close(b);
        }
        pairs.clear();
        continue;
      }
      for (size_t i = 0; i < pairs.size(); ++i) {
        for (int side = 0; side < 2; ++side) {
          if (!(fds[2 + 2 * i + side].revents & (POLLIN | POLLHUP | POLLERR))) continue;
          auto [c, b] = pairs[i];
          const int from = side == 0 ? c : b, to = side == 0 ? b : c;
          const ssize_t n = ::read(from, buf, sizeof(buf));
          if (n > 0) (void)!::write(to, buf, static_cast<size_t>(n));
        }
      }
      if (fds[0].revents & POLLIN) {
        const int c = ::accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
        const int b = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        a.sin_port = htons(static_cast<uint16_t>(target_port_));
        if (c >= 0 && ::connect(b, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0) {
          pairs.emplace_back(c, b);
        } else {
          ::close(c);
          ::close(b);
        }
      }
    }
    for (auto [c, b] : pairs) {
      ::close(c);
      ::close(b);
    }
  }

  int target_port_, port_ = 0, listener_ = -1, wake_[2] = {-1, -1};
  std::atomic<bool> stop_{false}, cut_{false};
  std::thread thread_;
};

TEST_F(AmqpPoolTest, AWorkerThatLosesTheBrokerReconnectsAndServesAgain) {
  auto url = broker::ParseAmqpUrl(amqp_test::Broker().url);
  ASSERT_TRUE(url.ok());
  CuttableRelay relay(url->port);
  const std::string via_relay =
      fmt::format("amqp://{}:{}@127.0.0.1:{}/", url->user, url->password, relay.port());
  test::Child worker({test::P2ptrainBin(), "function", "--serve", "--broker", via_relay, "--queue",
                      queue_, "--verbose", "--reconnect-timeout", "60"});
  ASSERT_TRUE(WaitForLog(worker, "serving gradient tasks"));
  Fixture f = Fixture::Make(8);
  auto pool = MakeFunctionPool(Options(1));
  ASSERT_TRUE(pool.ok()) << pool.status().ToString();
  ASSERT_TRUE((*pool)->RunAll(f.Tasks(1)).ok());
  relay.Cut();
  ASSERT_TRUE(WaitForLog(worker, "retrying in"));
  auto again = (*pool)->RunAll(f.Tasks(1));  // served after the worker came back
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  ExpectMeanEquals(*again, {8}, f.LocalGradient());
  worker.Kill(SIGTERM);
  const auto done = worker.Wait(30s);
  EXPECT_EQ(done.exit_code, 0) << done.err;
  size_t servings = 0;
  for (size_t at = 0; (at = done.err.find("serving gradient tasks", at)) != std::string::npos; ++at)
    ++servings;
  EXPECT_EQ(servings, 2u) << done.err;
}

TEST(AmqpWorkerCliTest, AWorkerGivesUpOnAnUnreachableBrokerAfterItsReconnectTimeout) {
  const auto start = std::chrono::steady_clock::now();
  auto r = test::RunProcess({test::P2ptrainBin(), "function", "--serve", "--broker",
                             fmt::format("amqp://guest:guest@127.0.0.1:{}/", amqp_test::FreePort()),
                             "--reconnect-timeout", "1"},
                            60s);
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_NE(r.err.find("cannot reach RabbitMQ"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("retrying in"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("gave up after 1 s"), std::string::npos) << r.err;
  EXPECT_LT(std::chrono::steady_clock::now() - start, 20s);
}

TEST(AmqpWorkerCliTest, AWorkerWaitingForItsBrokerStopsAtOnceOnSigterm) {
  test::Child worker({test::P2ptrainBin(), "function", "--serve", "--broker",
                      fmt::format("amqp://guest:guest@127.0.0.1:{}/", amqp_test::FreePort()),
                      "--reconnect-timeout", "600"});
  ASSERT_TRUE(test::WaitForFile(
      worker.err_path(),
      [&] { return test::ReadFile(worker.err_path()).find("retrying in") != std::string::npos; },
      60s));
  worker.Kill(SIGTERM);
  const auto done = worker.Wait(10s);
  EXPECT_FALSE(done.timed_out);
  EXPECT_EQ(done.exit_code, 0) << done.err;
}

TEST(AmqpWorkerCliTest, ServeWithoutABrokerIsAUsageError) {
  auto r = test::RunProcess({test::P2ptrainBin(), "function", "--serve"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("--broker"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace p2p::offload
