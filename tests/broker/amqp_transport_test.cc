// AmqpTransport against a real RabbitMQ (see amqp_test_broker.h for which one). Ranks run as
// threads, each with its own transport and connection.
#include "broker/amqp_transport.h"

#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include "broker/amqp_io.h"
#include "broker/amqp_session.h"
#include "broker/amqp_url.h"
#include "broker/chunking.h"
#include "tests/broker/amqp_test_broker.h"

namespace p2p::broker {
namespace {

using namespace std::chrono_literals;
using namespace p2p::broker::amqp_test;

class AmqpTransportTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(Broker().error.empty()) << Broker().error; }

  AmqpOptions Options(const std::string& run_id, int rank, int size) {
    AmqpOptions o;
    o.url = url_.empty() ? Broker().url : url_;
    o.run_id = run_id;
    o.rank = rank;
    o.size = size;
    return o;
  }

  std::vector<std::unique_ptr<AmqpTransport>> MakeRanks(const std::string& run_id, int size) {
    std::vector<std::unique_ptr<AmqpTransport>> ranks;
    for (int r = 0; r < size; ++r) {
      auto t = AmqpTransport::Create(Options(run_id, r, size));
      EXPECT_TRUE(t.ok()) << t.status().ToString();
      if (t.ok()) ranks.push_back(std::move(t).value());
    }
    return ranks;
  }

  // Connects every rank from its own thread (Connect blocks until all have said hello).
  static void ConnectAll(std::vector<std::unique_ptr<AmqpTransport>>& ranks,
                         std::chrono::milliseconds stagger = 0ms) {
    std::vector<Status> results(ranks.size());
    std::vector<std::thread> threads;
    Deadline deadline = DeadlineIn(30s);
    for (size_t r = 0; r < ranks.size(); ++r) {
      if (r > 0) std::this_thread::sleep_for(stagger);
      threads.emplace_back([&, r] { results[r] = ranks[r]->Connect(deadline); });
    }
    for (auto& t : threads) t.join();
    for (size_t r = 0; r < ranks.size(); ++r) {
      ASSERT_TRUE(results[r].ok()) << "rank " << r << ": " << results[r].ToString();
    }
  }

  static Message MustReceive(AmqpTransport& t, std::chrono::milliseconds timeout = 20s) {
    Result<std::optional<Message>> m = t.Receive(DeadlineIn(timeout));
    EXPECT_TRUE(m.ok()) << m.status().ToString();
    EXPECT_TRUE(m.ok() && m->has_value()) << "rank " << t.rank() << ": nothing received";
    return m.ok() && m->has_value() ? std::move(**m) : Message{};
  }

  static void ExpectNothing(AmqpTransport& t, std::chrono::milliseconds timeout = 300ms) {
    Result<std::optional<Message>> m = t.Receive(DeadlineIn(timeout));
    ASSERT_TRUE(m.ok()) << m.status().ToString();
    EXPECT_FALSE(m->has_value()) << "rank " << t.rank() << " got an unexpected message from "
                                 << (*m)->from_rank;
  }

  static Result<bool> QueueExists(const std::string& url, const std::string& queue) {
    amqp::SessionConfig config{ParseAmqpUrl(url).value()};
    P2P_ASSIGN_OR_RETURN(amqp::Session s, amqp::Session::Open(config, DeadlineIn(10s)));
    return s.QueueExists(queue);
  }

  std::string url_;  // overrides the broker URL (other vhost)
};

TEST_F(AmqpTransportTest, ThreeRanksPointToPoint) {
  auto ranks = MakeRanks(UniqueRunId("p2p"), 3);
  ASSERT_NO_FATAL_FAILURE(ConnectAll(ranks));
  for (int r = 0; r < 3; ++r) {
    int to = (r + 1) % 3;
    ASSERT_TRUE(ranks[r]->Send(to, ToBytes(fmt::format("from {} to {}", r, to))).ok());
  }
  for (int r = 0; r < 3; ++r) {
    int from = (r + 2) % 3;
    Message m = MustReceive(*ranks[r]);
    EXPECT_EQ(m.from_rank, from);
    EXPECT_EQ(ToString(m.payload), fmt::format("from {} to {}", from, r));
    ExpectNothing(*ranks[r]);
  }
  for (auto& t : ranks) EXPECT_TRUE(t->Close().ok());
}

TEST_F(AmqpTransportTest, BroadcastReachesEveryoneButTheSender) {
  auto ranks = MakeRanks(UniqueRunId("bcast"), 3);
  ASSERT_NO_FATAL_FAILURE(ConnectAll(ranks));
  for (int r = 0; r < 3; ++r)
    ASSERT_TRUE(ranks[r]->Broadcast(ToBytes(fmt::format("hi from {}", r))).ok());
  for (int r = 0; r < 3; ++r) {
    std::set<int> senders;
    for (int i = 0; i < 2; ++i) {
      Message m = MustReceive(*ranks[r]);
      EXPECT_EQ(ToString(m.payload), fmt::format("hi from {}", m.from_rank));
      senders.insert(m.from_rank);
    }
    EXPECT_EQ(senders.size(), 2u);
    EXPECT_FALSE(senders.contains(r));
    ExpectNothing(*ranks[r]);  // no echo of its own broadcast
  }
  for (auto& t : ranks) EXPECT_TRUE(t->Close().ok());
}

TEST_F(AmqpTransportTest, LateJoinerIsHeard) {  // the hello protocol: rank 2 starts 2 s later
  auto ranks = MakeRanks(UniqueRunId("late"), 3);
  ASSERT_NO_FATAL_FAILURE(ConnectAll(ranks, /*stagger=*/1s));
  ASSERT_TRUE(ranks[2]->Send(0, ToBytes("late")).ok());
  EXPECT_EQ(ToString(MustReceive(*ranks[0]).payload), "late");
}

TEST_F(AmqpTransportTest, FortyMegabytesArriveChunkedAndIntact) {
  auto ranks = MakeRanks(UniqueRunId("big"), 3);
  ASSERT_NO_FATAL_FAILURE(ConnectAll(ranks));
  Bytes big(40'000'000);
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<std::byte>((i * 2654435761u) >> 24);
  ASSERT_TRUE(ranks[0]->Broadcast(big).ok());
  ASSERT_TRUE(ranks[0]->Send(1, ToBytes("after")).ok());
  ASSERT_TRUE(ranks[0]->Flush(DeadlineIn(60s)).ok());
  for (int r : {1, 2}) {
    Message m = MustReceive(*ranks[r], 60s);
    EXPECT_EQ(m.from_rank, 0);
    EXPECT_TRUE(m.payload == big) << "rank " << r << ": payload differs (" << m.payload.size()
                                  << " bytes)";
  }
  EXPECT_EQ(ToString(MustReceive(*ranks[1]).payload), "after");  // order kept per sender
  TransportStats s0 = ranks[0]->Stats();
  EXPECT_GE(s0.bytes_sent, big.size());  // 3 chunks of <= 16 MiB, published once
  EXPECT_LT(s0.bytes_sent, big.size() + 4096);
  EXPECT_EQ(ranks[1]->Stats().messages_received, 2u);
}

TEST_F(AmqpTransportTest, ReceiveTimeoutReturnsNullopt) {
  auto ranks = MakeRanks(UniqueRunId("timeout"), 2);
  ASSERT_NO_FATAL_FAILURE(ConnectAll(ranks));
  auto start = Clock::now();
  Result<std::optional<Message>> m = ranks[0]->Receive(DeadlineIn(300ms));
  auto elapsed = Clock::now() - start;
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_FALSE(m->has_value());
  EXPECT_GE(elapsed, 290ms);
  EXPECT_LT(elapsed, 2s);
}

TEST_F(AmqpTransportTest, CloseRemovesQueuesAndExchange) {
  std::string run = UniqueRunId("close");
  auto ranks = MakeRanks(run, 3);
  ASSERT_NO_FATAL_FAILURE(ConnectAll(ranks));
  for (int r = 0; r < 3; ++r) {
    EXPECT_EQ(QueueExists(Broker().url, ranks[0]->queue_name(r)).value(), true);
  }
  ASSERT_TRUE(ranks[0]->Broadcast(ToBytes("bye")).ok());  // unread messages do not block Close
  std::string exchange = ranks[0]->exchange_name();
  for (auto& t : ranks) ASSERT_TRUE(t->Close().ok());
  EXPECT_TRUE(ranks[0]->Close().ok());  // idempotent
  for (int r = 0; r < 3; ++r) {
    Result<bool> exists = QueueExists(Broker().url, fmt::format("p2p.{}.rank{}", run, r));
    ASSERT_TRUE(exists.ok()) << exists.status().ToString();
    EXPECT_FALSE(*exists) << "queue of rank " << r << " survived Close";
  }
  amqp::SessionConfig config{ParseAmqpUrl(Broker().url).value()};
  auto s = amqp::Session::Open(config, DeadlineIn(10s));
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_EQ(s->ExchangeExists(exchange).value(), false) << "auto-delete exchange survived";
  EXPECT_FALSE(ranks[0]->Send(1, ToBytes("x")).ok());  // used after Close
}

TEST_F(AmqpTransportTest, ConnectTimesOutNamingMissingRanks) {
  auto t = AmqpTransport::Create(Options(UniqueRunId("alone"), 0, 3)).value();
  Status s = t->Connect(DeadlineIn(1s));
  EXPECT_EQ(s.code(), StatusCode::kTimeout) << s.ToString();
  EXPECT_NE(s.message().find("1,2"), std::string::npos) << s.message();
  EXPECT_TRUE(t->Close().ok());
}

TEST_F(AmqpTransportTest, WrongPasswordIsAnErrorNotAHang) {
  AmqpUrl u = ParseAmqpUrl(Broker().url).value();
  url_ = fmt::format("amqp://{}:wrong-password@{}/", u.user, u.Endpoint());
  auto t = AmqpTransport::Create(Options(UniqueRunId("auth"), 0, 1)).value();
  auto start = Clock::now();
  Status s = t->Connect(DeadlineIn(20s));
  EXPECT_LT(Clock::now() - start, 15s) << "should fail at once, not retry until the deadline";
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.ToString();
  EXPECT_NE(s.message().find("ACCESS_REFUSED"), std::string::npos) << s.message();
}

TEST_F(AmqpTransportTest, UnreachablePortIsUnavailableWithinDeadline) {
  int port = FreePort();
  url_ = fmt::format("amqp://guest:guest@127.0.0.1:{}/", port);
  auto t = AmqpTransport::Create(Options(UniqueRunId("down"), 0, 2)).value();
  auto start = Clock::now();
  Status s = t->Connect(DeadlineIn(1500ms));
  auto elapsed = Clock::now() - start;
  EXPECT_EQ(s.code(), StatusCode::kUnavailable) << s.ToString();
  EXPECT_NE(s.message().find(fmt::format("127.0.0.1:{}", port)), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("scripts/start-rabbitmq.sh"), std::string::npos) << s.message();
  EXPECT_LT(elapsed, 2500ms);
  EXPECT_EQ(t->Send(1, ToBytes("x")).code(), StatusCode::kInvalidArgument);  // not connected
}

TEST_F(AmqpTransportTest, TlsAgainstAPlainPortFailsWithinDeadline) {
  AmqpUrl u = ParseAmqpUrl(Broker().url).value();
  url_ = fmt::format("amqps://guest:guest@{}/?verify=verify_none", u.Endpoint());
  auto t = AmqpTransport::Create(Options(UniqueRunId("tls"), 0, 1)).value();
  auto start = Clock::now();
  Status s = t->Connect(DeadlineIn(3s));
  EXPECT_FALSE(s.ok());
  EXPECT_LT(Clock::now() - start, 6s) << s.ToString();
}

TEST_F(AmqpTransportTest, RejectsBadOptionsAndCalls) {
  EXPECT_FALSE(AmqpTransport::Create(Options("bad run id", 0, 1)).ok());
  EXPECT_FALSE(AmqpTransport::Create(Options("r", 2, 2)).ok());
  AmqpOptions tls = Options("r", 0, 1);
  tls.url = "amqp://h/";
  tls.tls_insecure = true;
  EXPECT_FALSE(AmqpTransport::Create(tls).ok());
  auto ranks = MakeRanks(UniqueRunId("calls"), 2);
  EXPECT_EQ(ranks[0]->Receive(DeadlineIn(10ms)).status().code(), StatusCode::kInvalidArgument);
  ASSERT_NO_FATAL_FAILURE(ConnectAll(ranks));
  EXPECT_EQ(ranks[0]->Send(0, ToBytes("me")).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(ranks[0]->Send(2, ToBytes("nobody")).code(), StatusCode::kInvalidArgument);
}

// The caller "computes" for longer than two heartbeat intervals without touching the transport;
// the I/O thread must keep the connection alive (no reconnect) and deliver afterwards.
TEST_F(AmqpTransportTest, HeartbeatsAreServicedWhileTheCallerIsBusy) {
  AmqpUrl u = ParseAmqpUrl(Broker().url).value();
  url_ = fmt::format("amqp://{}:{}@{}/?heartbeat=2", u.user, u.password, u.Endpoint());
  auto ranks = MakeRanks(UniqueRunId("hb"), 2);
  ASSERT_NO_FATAL_FAILURE(ConnectAll(ranks));
  std::this_thread::sleep_for(7s);
  ASSERT_TRUE(ranks[1]->Send(0, ToBytes("still here")).ok());
  EXPECT_EQ(ToString(MustReceive(*ranks[0]).payload), "still here");
  EXPECT_EQ(ranks[0]->reconnects(), 0u);
  EXPECT_EQ(ranks[1]->reconnects(), 0u);
}

// Needs rabbitmqctl on the local node: the test gets a vhost of its own and has the broker close
// every connection on it, twice, while messages are in flight.
TEST_F(AmqpTransportTest, ReconnectsAndRedeliversAfterTheBrokerDropsConnections) {
  if (Broker().node.empty()) GTEST_SKIP() << "needs a local scripts/start-rabbitmq.sh broker";
  std::string vhost = UniqueRunId("vh");
  ASSERT_EQ(Ctl("add_vhost " + vhost).exit_code, 0);
  ASSERT_EQ(Ctl("set_permissions -p " + vhost + " guest '.*' '.*' '.*'").exit_code, 0);
  AmqpUrl u = ParseAmqpUrl(Broker().url).value();
  url_ = fmt::format("amqp://guest:guest@{}/{}", u.Endpoint(), vhost);
  auto ranks = MakeRanks(UniqueRunId("reconnect"), 2);
  ASSERT_NO_FATAL_FAILURE(ConnectAll(ranks));
  for (int round = 0; round < 2; ++round) {
    ASSERT_TRUE(ranks[0]->Send(1, ToBytes(fmt::format("before {}", round))).ok());
    CommandResult c = Ctl("close_all_connections -p " + vhost + " 'p2ptrain test'");
    ASSERT_EQ(c.exit_code, 0) << c.out;
    ASSERT_TRUE(ranks[0]->Send(1, ToBytes(fmt::format("during {}", round))).ok());
    ASSERT_TRUE(ranks[1]->Send(0, ToBytes(fmt::format("back {}", round))).ok());
    EXPECT_EQ(ToString(MustReceive(*ranks[1], 30s).payload), fmt::format("before {}", round));
    EXPECT_EQ(ToString(MustReceive(*ranks[1], 30s).payload), fmt::format("during {}", round));
    EXPECT_EQ(ToString(MustReceive(*ranks[0], 30s).payload), fmt::format("back {}", round));
    ExpectNothing(*ranks[1]);  // no duplicates
  }
  EXPECT_GE(ranks[0]->reconnects(), 1u);
  EXPECT_GE(ranks[1]->reconnects(), 1u);
  for (auto& t : ranks) EXPECT_TRUE(t->Close().ok());
  Ctl("delete_vhost " + vhost);
}

// ------------------------------------------------------------------ hostile publishers

// Anyone allowed to publish on the broker: its own connection, publishing hand-made P2PA frames
// to the run's exchange, and reading rank 0's broadcasts through a queue of its own.
class Intruder {
 public:
  explicit Intruder(const std::string& exchange) : exchange_(exchange) {
    amqp::SessionConfig config{ParseAmqpUrl(Broker().url).value()};
    auto s = amqp::Session::Open(config, DeadlineIn(10s));
    EXPECT_TRUE(s.ok()) << s.status().ToString();
    if (s.ok()) session_.emplace(std::move(s).value());
  }
  ~Intruder() {
    if (session_ && !queue_.empty()) (void)session_->DeleteQueue(queue_);
  }
  bool ok() const { return session_.has_value(); }

  void Publish(const std::string& key, std::span<const std::byte> body) {
    ASSERT_TRUE(session_->Publish(exchange_, key, body).ok());
  }
  // Binds a queue of its own to rank 0's broadcasts.
  void Listen(const std::string& queue) {
    queue_ = queue;
    ASSERT_TRUE(session_->DeclareQueue(queue_, 60s).ok());
    ASSERT_TRUE(session_->Bind(queue_, exchange_, amqp::BroadcastKey(0)).ok());
    ASSERT_TRUE(session_->Consume(queue_).ok());
  }
  // The next body it overhears (empty when none arrives by the deadline).
  Bytes Overhear(Deadline deadline) {
    while (Clock::now() < deadline) {
      auto event = session_->Poll(
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()));
      if (!event.ok()) break;
      if (auto* d = std::get_if<amqp::Delivery>(&*event)) {
        Bytes body(d->envelope.body().begin(), d->envelope.body().end());
        (void)session_->Ack(d->envelope.delivery_tag());
        return body;
      }
    }
    return {};
  }

 private:
  std::string exchange_, queue_;
  std::optional<amqp::Session> session_;
};

// A P2PA data frame as an attacker writes it: any geometry, `payload` bytes of 0x5a.
Bytes Forged(uint32_t rank, uint64_t incarnation, uint64_t seq, uint64_t total, uint32_t stride,
             uint32_t index, size_t payload) {
  broker::ChunkHeader h{broker::FrameKind::kData, rank};
  h.incarnation = incarnation;
  h.seq = seq;
  Bytes frame = broker::EncodeChunks(h, Bytes(1, std::byte{0x5a}), 1024).front();  // a valid base
  frame.resize(broker::kChunkHeaderBytes + payload, std::byte{0x5a});
  auto put = [&frame](size_t at, uint64_t v, size_t n) {
    for (size_t i = 0; i < n; ++i) frame[at + i] = static_cast<std::byte>(v >> (8 * i));
  };
  put(12, index, 4);
  put(16, (total + stride - 1) / stride, 4);  // count
  put(20, stride, 4);
  put(40, total, 8);
  return frame;
}

// A single-chunk message claiming `rank`: published after the hostile frames on the same
// channel, it reaches the victim's queue after them, so receiving it proves they were handled.
Bytes Marker(uint32_t rank, const std::string& text) {
  broker::ChunkHeader h{broker::FrameKind::kData, rank};
  h.incarnation = 0x3a3a3a3a;
  h.seq = 1;
  return broker::EncodeChunks(h, ToBytes(text), 1024).front();
}

uint64_t RssBytes() {
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoull(line.substr(6)) * 1024;  // kB
  }
  return 0;
}

// Issue 17 (1b): one 49-byte frame announcing 4 GiB in one-byte strides made the receiver
// allocate and zero-fill 4 GiB. Now it is rejected unallocated, a flood of frames announcing the
// largest allowed message holds only what arrived, every drop is counted, and genuine traffic,
// multi-chunk included, is delivered intact.
TEST_F(AmqpTransportTest, ForgedGigabyteFramesKeepMemoryBoundedAndTrafficIntact) {
  std::string run = UniqueRunId("forged");
  std::vector<std::unique_ptr<AmqpTransport>> ranks;
  for (int r = 0; r < 2; ++r) {
    AmqpOptions o = Options(run, r, 2);
    o.chunk_bytes = 1 << 20;  // genuine messages below are multi-chunk
    ranks.push_back(AmqpTransport::Create(o).value());
  }
  ASSERT_NO_FATAL_FAILURE(ConnectAll(ranks));
  Intruder intruder(ranks[0]->exchange_name());
  ASSERT_TRUE(intruder.ok());
  const uint64_t rss_before = RssBytes();
  const uint64_t rejected_before = ranks[1]->Stats().rejected;

  const Bytes gigabytes = Forged(0, 77, 1, 0xFFFFFFFFull, 1, 0, 1);
  ASSERT_EQ(gigabytes.size(), 49u);
  intruder.Publish(amqp::DirectKey(1), gigabytes);
  constexpr int kFlood = 500;  // starts of 256 MiB messages (the limit) claiming rank 0
  for (int i = 0; i < kFlood; ++i) {
    intruder.Publish(amqp::DirectKey(1), Forged(0, 78 + i % 7, 10 + i, 256ull << 20, 1, i % 2, 1));
  }
  intruder.Publish(amqp::DirectKey(1), Marker(0, "marker"));
  EXPECT_EQ(ToString(MustReceive(*ranks[1], 60s).payload), "marker");

  std::printf(
      "after the forged frames: %llu bytes held for incomplete messages, RSS %+lld KiB, "
      "%llu frames rejected\n",
      static_cast<unsigned long long>(ranks[1]->incomplete_bytes()),
      (static_cast<long long>(RssBytes()) - static_cast<long long>(rss_before)) / 1024,
      static_cast<unsigned long long>(ranks[1]->Stats().rejected - rejected_before));
  EXPECT_LT(ranks[1]->incomplete_bytes(), 64u << 10);
  EXPECT_LT(RssBytes(), rss_before + (64u << 20)) << "RSS grew from " << rss_before;
  // The 4-GiB frame, and all but the 16 forged starts a sender may have pending, were dropped.
  EXPECT_GE(ranks[1]->Stats().rejected - rejected_before, 1u + kFlood - 16);

  Bytes genuine(3'500'000);
  for (size_t i = 0; i < genuine.size(); ++i) genuine[i] = static_cast<std::byte>(i * 7 + 1);
  ASSERT_TRUE(ranks[0]->Send(1, genuine).ok());
  ASSERT_TRUE(ranks[0]->Send(1, ToBytes("after")).ok());
  Message m = MustReceive(*ranks[1], 60s);
  EXPECT_EQ(m.from_rank, 0);
  EXPECT_TRUE(m.payload == genuine)
      << "multi-chunk message damaged (" << m.payload.size() << " bytes)";
  EXPECT_EQ(ToString(MustReceive(*ranks[1]).payload), "after");
  for (auto& t : ranks) EXPECT_TRUE(t->Close().ok());
}

// Sends the default logger's lines to a string for the test's lifetime.
class CapturedLog {
 public:
  CapturedLog() : previous_(spdlog::default_logger()) {
    auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(text_);
    spdlog::set_default_logger(std::make_shared<spdlog::logger>("captured", sink));
  }
  ~CapturedLog() { spdlog::set_default_logger(previous_); }
  size_t Count(const std::string& what) {
    spdlog::default_logger()->flush();
    const std::string text = text_.str();
    size_t n = 0;
    for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
    return n;
  }

 private:
  std::ostringstream text_;
  std::shared_ptr<spdlog::logger> previous_;
};

// Issue 17 (items 1b, 6): AMQP counted rejected frames but never said so in its log (the
// reassembler's drop observer was unused), so an operator saw a stalled run and no reason. Each
// reason is now logged once per claimed sender, and every drop is still counted.
TEST_F(AmqpTransportTest, DroppedFramesAreLoggedOncePerReasonAndClaimedSender) {
  CapturedLog log;
  std::string run = UniqueRunId("droplog");
  auto ranks = MakeRanks(run, 2);
  ASSERT_NO_FATAL_FAILURE(ConnectAll(ranks));
  Intruder intruder(ranks[0]->exchange_name());
  ASSERT_TRUE(intruder.ok());
  const uint64_t rejected_before = ranks[1]->Stats().rejected;
  for (int i = 0; i < 3; ++i) {
    intruder.Publish(amqp::DirectKey(1), Forged(0, 77, 1, 0xFFFFFFFFull, 1, 0, 1));  // 4 GiB
    intruder.Publish(amqp::DirectKey(1), ToBytes("not a P2PA frame at all"));
    intruder.Publish(amqp::DirectKey(1), Marker(7, "rank 7 of a run of 2"));
  }
  constexpr int kStarts = 20;  // a sender may have 16 incomplete messages: 4 are evicted
  for (int i = 0; i < kStarts; ++i) {
    intruder.Publish(amqp::DirectKey(1), Forged(0, 78, 10 + i, 256ull << 20, 1, 0, 1));
  }
  intruder.Publish(amqp::DirectKey(1), Marker(0, "marker"));
  EXPECT_EQ(ToString(MustReceive(*ranks[1], 60s).payload), "marker");
  EXPECT_EQ(ranks[1]->Stats().rejected - rejected_before, 6u + 3u + (kStarts - 16));
  EXPECT_EQ(log.Count("dropped a frame (bad_chunk)"), 1u);
  EXPECT_EQ(log.Count("dropped a frame (bad_rank)"), 1u);
  EXPECT_EQ(log.Count("dropped a frame (evicted)"), 1u);
  EXPECT_EQ(log.Count("claiming rank 0"), 1u);  // the eviction names the claimed sender
  for (auto& t : ranks) EXPECT_TRUE(t->Close().ok());
}

// A forged hello used to make the receiver forget the sender's reassembly and replay state, so
// an exact replay of a message it had delivered was delivered again; a forged message with a
// future seq made the genuine one be dropped as a duplicate.
TEST_F(AmqpTransportTest, ForgedHelloAndFutureSeqDoNotBreakTheReplayFilter) {
  std::string run = UniqueRunId("replay");
  auto ranks = MakeRanks(run, 2);
  ASSERT_NO_FATAL_FAILURE(ConnectAll(ranks));
  Intruder intruder(ranks[0]->exchange_name());
  ASSERT_TRUE(intruder.ok());
  ASSERT_NO_FATAL_FAILURE(intruder.Listen("p2p." + run + ".intruder"));

  ASSERT_TRUE(ranks[0]->Broadcast(ToBytes("genuine 1")).ok());
  EXPECT_EQ(ToString(MustReceive(*ranks[1]).payload), "genuine 1");
  const Bytes overheard = intruder.Overhear(DeadlineIn(20s));
  ASSERT_FALSE(overheard.empty());
  const broker::ChunkHeader seen = broker::DecodeChunk(overheard, 1 << 20).value().header;

  const uint64_t rejected_before = ranks[1]->Stats().rejected;
  intruder.Publish(amqp::DirectKey(1), amqp::HelloBody(broker::FrameKind::kHello, 0, 0xbad));
  intruder.Publish(amqp::DirectKey(1), overheard);  // the exact bytes again
  broker::ChunkHeader next = seen;                  // and the seq rank 0 will use next
  ++next.seq;
  intruder.Publish(amqp::DirectKey(1), broker::EncodeChunks(next, ToBytes("forged 2"), 1024)[0]);
  intruder.Publish(amqp::DirectKey(1), Marker(0, "marker"));
  EXPECT_EQ(ToString(MustReceive(*ranks[1]).payload), "forged 2");  // the MAC's job (sync/)
  EXPECT_EQ(ToString(MustReceive(*ranks[1]).payload), "marker") << "the replay was delivered";
  EXPECT_EQ(ranks[1]->Stats().rejected - rejected_before, 1u);  // the replay, counted

  ASSERT_TRUE(ranks[0]->Broadcast(ToBytes("genuine 2")).ok());
  EXPECT_EQ(ToString(MustReceive(*ranks[1]).payload), "genuine 2")
      << "the genuine message was dropped as a duplicate of the forged one";
  for (auto& t : ranks) EXPECT_TRUE(t->Close().ok());
}

}  // namespace
}  // namespace p2p::broker
