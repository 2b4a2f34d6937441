// Sync-round benchmark: W peers, each a thread of this process owning a real transport, a
// sync::Mailbox and the allgather-average sync::Strategy, as a peer process would. One benchmark
// iteration is one full round: every peer calls Average for the same Round with P floats, and the
// iteration ends when the last peer has the average. Threads are aligned by barriers (no sleeps);
// the round time runs from the release of the last peer to the end of the last one (manual time).
//
// Groups (names: GROUP/TRANSPORT/W:w/P:p):
//   round/       the real round. Transports: inproc (the sync layer without sockets), zmq
//                (ZmqTransport mesh on tcp://127.0.0.1, ephemeral ports), zmq_ipc (ipc:// sockets),
//                amqp (AmqpTransport through RabbitMQ: $P2P_AMQP_URL, or else a node this program
//                starts with scripts/start-rabbitmq.sh 5681 and leaves running; without a broker
//                the amqp cases fail with the reason and the rest still run).
//   round_rs/    the real round with the reduce-scatter-average strategy (the same average, half
//                the bytes at W = 4).
//   xport/       the bare transport moving the same bytes: each peer broadcasts 4P bytes and
//                receives W-1 such messages (no envelope, mailbox or averaging).
//   xport_rsag/  the bare transport doing reduce-scatter + allgather (2(W-1)/W x 4P bytes per
//                peer): what a bandwidth-optimal strategy could reach on that transport.
//   strat/       every strategy of docs/strategies.md side by side (4 and 8 peers x 1M and 10M
//                floats, zmq and amqp): round time and bytes sent per peer and by the busiest one;
//                STRATEGY+CODEC rows run it with --compression CODEC.
//   envelope/    one peer's per-message encode / decode of a GRADIENT envelope, and one memcpy.
//
// Counters (defined in bench/README.md): median_ms, min_ms, max_ms; GBps = 4P(W-1) bytes / median
// round; cpu_ms / sys_ms / faults = this process's CPU time and minor page faults per round;
// broker_cpu_ms = RabbitMQ's CPU per round (local node only); send/wait/reduce/encode/decode_ms =
// the strategy's own split per peer and round; target_ms, a MET/MISSED label and x_zmq (amqp round
// / zmq round of the same W and P) where the issue sets targets.
//
// Run: sync_round_bench [--benchmark_filter='round/(zmq|amqp)/W:4/P:1000000/']
#include <benchmark/benchmark.h>
#include <fmt/format.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <barrier>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "broker/amqp_transport.h"
#include "broker/amqp_url.h"
#include "broker/envelope.h"
#include "broker/inproc_transport.h"
#include "broker/zmq_transport.h"
#include "common/malloc_tuning.h"
#include "sync/gradient_body.h"
#include "sync/mailbox.h"
#include "sync/strategy.h"

#ifndef P2P_SOURCE_DIR
#error "P2P_SOURCE_DIR must name the source tree (bench/CMakeLists.txt defines it)"
#endif

namespace p2p::sync {
namespace {

using Clock = std::chrono::steady_clock;

constexpr auto kConnectTimeout = std::chrono::seconds(30);
constexpr int kAmqpPort = 5681;  // our own start-rabbitmq.sh node, apart from the tests' 5672
constexpr uint32_t kSamples = 64;

// Targets of the issue, measured on this 2-core machine class.
constexpr double kGlooMs = 14.0;   // PyTorch gloo all-reduce, 4 local processes, 1M floats
constexpr double kPikaMs = 107.0;  // a Python pika peer doing the same fanout exchange
constexpr int kTargetW = 4;
constexpr int64_t kTargetP = 1'000'000;

enum class Kind { kInProc, kZmqTcp, kZmqIpc, kAmqp };

// What a round is. kSync: the real thing (allgather-average through Mailbox and Strategy). The
// other two use the bare transport with raw float payloads (no envelope, no mailbox) and bound
// what a strategy could reach on it: kAllgather broadcasts all P floats (the bytes
// allgather-average moves); kReduceScatter sends slice j of P/W floats to rank j, which sums its
// slice in rank order and broadcasts it back (reduce-scatter + allgather: 2(W-1)/W x 4P bytes per
// peer, like a ring all-reduce, in two steps).
// kSyncRs: the real round with the reduce-scatter-average strategy instead.
enum class Mode { kSync, kSyncRs, kAllgather, kReduceScatter };

const char* KindName(Kind k) {
  switch (k) {
    case Kind::kInProc:
      return "inproc";
    case Kind::kZmqTcp:
      return "zmq";
    case Kind::kZmqIpc:
      return "zmq_ipc";
    case Kind::kAmqp:
      return "amqp";
  }
  return "?";
}

std::string UniqueRunId() {
  static std::atomic<int> counter{0};
  return fmt::format("bench-{}-{}", ::getpid(), ++counter);
}

// ------------------------------------------------------------------ the broker for amqp cases

struct BrokerUrl {
  std::string url;
  std::string error;  // why there is none
};

std::string LastLine(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
  const size_t nl = s.rfind('\n');
  return nl == std::string::npos ? s : s.substr(nl + 1);
}

// $P2P_AMQP_URL, or a node on kAmqpPort started (once per process; left running for the next
// run, scripts/stop-rabbitmq.sh 5681 stops it).
const BrokerUrl& AmqpBroker() {
  static const BrokerUrl broker = [] {
    BrokerUrl b;
    if (const char* env = std::getenv("P2P_AMQP_URL"); env != nullptr && *env != '\0') {
      b.url = env;
      return b;
    }
    const std::string command =
        fmt::format("'{}/scripts/start-rabbitmq.sh' {} 2>&1", P2P_SOURCE_DIR, kAmqpPort);
    std::string out;
    int rc = -1;
    if (FILE* pipe = ::popen(command.c_str(), "r"); pipe != nullptr) {
      char buf[4096];
      for (size_t n; (n = std::fread(buf, 1, sizeof(buf), pipe)) > 0;) out.append(buf, n);
      rc = ::pclose(pipe);
    }
    const std::string last = LastLine(out);
    if (rc != 0 || last.rfind("amqp", 0) != 0) {
      b.error = fmt::format(
          "no RabbitMQ: P2P_AMQP_URL is unset and `{}` failed (status {}): {}. Run "
          "scripts/setup.sh, or point P2P_AMQP_URL at a broker",
          command, rc, LastLine(out));
    } else {
      b.url = last;
    }
    return b;
  }();
  return broker;
}

// CPU seconds used so far by the broker, when it is a local start-rabbitmq.sh node (its pid file
// is known); nullopt otherwise. Lets the amqp cases show the broker's share of the 2 cores.
std::optional<double> BrokerCpuSeconds() {
  const BrokerUrl& b = AmqpBroker();
  if (!b.error.empty()) return std::nullopt;
  auto url = broker::ParseAmqpUrl(b.url);
  if (!url.ok() || (url->host != "127.0.0.1" && url->host != "localhost")) return std::nullopt;
  const char* root = std::getenv("P2P_RABBIT_DIR");
  const std::string pid_file = fmt::format(
      "{}/node-{}/rabbitmq.pid", root != nullptr ? root : "/tmp/p2ptrain-rabbitmq", url->port);
  long pid = 0;
  if (!(std::ifstream(pid_file) >> pid)) return std::nullopt;
  std::ifstream stat(fmt::format("/proc/{}/stat", pid));
  std::string field;
  double ticks = 0;
  // Fields 14 and 15 are utime and stime; the command (field 2) has no spaces for beam.smp.
  for (int i = 1; i <= 15 && (stat >> field); ++i) {
    if (i >= 14) ticks += std::stod(field);
  }
  if (!stat) return std::nullopt;
  return ticks / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

// ------------------------------------------------------------------ a group of peers

Result<std::vector<std::unique_ptr<broker::Transport>>> MakeTransports(Kind kind, int w,
                                                                       const std::string& run_id,
                                                                       const std::string& ipc_dir) {
  std::vector<std::unique_ptr<broker::Transport>> out;
  switch (kind) {
    case Kind::kInProc:
      for (auto& t : broker::MakeInProcGroup(w)) out.push_back(std::move(t));
      return out;
    case Kind::kZmqTcp:
    case Kind::kZmqIpc: {
      std::vector<broker::ZmqTransport*> zmq;
      std::vector<std::string> endpoints;
      for (int r = 0; r < w; ++r) {
        broker::ZmqTransportOptions o;
        o.rank = r;
        o.size = w;
        o.run_id = run_id;
        o.bind_endpoint = kind == Kind::kZmqTcp ? "tcp://127.0.0.1:*"
                                                : fmt::format("ipc://{}/rank{}", ipc_dir, r);
        // $P2P_BENCH_CHUNK_KB: another chunk size, to choose the default by measurement.
        if (const char* kb = std::getenv("P2P_BENCH_CHUNK_KB"); kb != nullptr && *kb != '\0') {
          o.max_chunk_bytes = static_cast<size_t>(std::strtoull(kb, nullptr, 10)) << 10;
        }
        P2P_ASSIGN_OR_RETURN(auto t, broker::ZmqTransport::Create(std::move(o)));
        zmq.push_back(t.get());
        endpoints.push_back(t->bound_endpoint());
        out.push_back(std::move(t));
      }
      for (broker::ZmqTransport* t : zmq) P2P_RETURN_IF_ERROR(t->SetEndpoints(endpoints));
      return out;
    }
    case Kind::kAmqp: {
      const BrokerUrl& b = AmqpBroker();
      if (!b.error.empty()) return Unavailable("{}", b.error);
      for (int r = 0; r < w; ++r) {
        broker::AmqpOptions o;
        o.url = b.url;
        o.run_id = run_id;
        o.rank = r;
        o.size = w;
        P2P_ASSIGN_OR_RETURN(auto t, broker::AmqpTransport::Create(std::move(o)));
        out.push_back(std::move(t));
      }
      return out;
    }
  }
  return InvalidArgument("unknown transport");
}

// Default strategy options, but $P2P_BENCH_PEER_TIMEOUT_S seconds of peer timeout when set: a
// cold 4 x 100M round on a loaded 2-core machine can take longer than the default 60 s.
StrategyOptions BenchStrategyOptions() {
  StrategyOptions o;
  if (const char* s = std::getenv("P2P_BENCH_PEER_TIMEOUT_S"); s != nullptr && *s != '\0') {
    o.peer_timeout = std::chrono::seconds(std::max(1LL, std::strtoll(s, nullptr, 10)));
  }
  return o;
}

// W peer threads parked on a barrier between rounds. The main thread is the (W+1)-th party of
// both barriers; their completion steps time-stamp the start and the end of a round.
class Group {
 public:
  // `strategy`: the --strategy of kSync rounds ("" : allgather-average).
  static Result<std::unique_ptr<Group>> Create(Kind kind, int w, size_t p, Mode mode,
                                               std::string strategy = "") {
    auto g = std::unique_ptr<Group>(new Group(kind, w, p, mode));
    g->strategy_name_ = strategy.empty() ? "allgather-average" : std::move(strategy);
    P2P_RETURN_IF_ERROR(g->Start());
    return g;
  }

  ~Group() { Stop(); }

  // One round on every peer; its wall time in seconds.
  Result<double> RunRound() {
    ++step_;
    start_.arrive_and_wait();
    done_.arrive_and_wait();
    for (int r = 0; r < w_; ++r) {
      if (!peers_[r].status.ok()) return peers_[r].status.Annotate(fmt::format("rank {}", r));
    }
    return std::chrono::duration<double>(round_end_ - round_start_).count();
  }

  // Sum over peers of the strategies' timings (read between rounds only).
  SyncTimings Timings() const {
    SyncTimings sum;
    for (const Peer& peer : peers_) {
      if (!peer.strategy) continue;
      const SyncTimings& t = peer.strategy->timings();
      sum.send_seconds += t.send_seconds;
      sum.wait_seconds += t.wait_seconds;
      sum.reduce_seconds += t.reduce_seconds;
      sum.encode_seconds += t.encode_seconds;
      sum.decode_seconds += t.decode_seconds;
      sum.rounds += t.rounds;
    }
    return sum;
  }

  // Payload bytes each peer's transport has sent so far (read between rounds only).
  std::vector<double> BytesSent() const {
    std::vector<double> out;
    for (const Peer& peer : peers_) out.push_back(double(peer.transport->Stats().bytes_sent));
    return out;
  }

  uint64_t Rejects() const {
    uint64_t n = 0;
    for (const Peer& peer : peers_) {
      if (peer.mailbox) n += peer.mailbox->rejects().total() + peer.transport->Stats().rejected;
    }
    return n;
  }

  // Every peer must hold bitwise the same average (read between rounds only).
  bool AllAgree() const {
    if (mode_ == Mode::kAllgather) return true;
    for (int r = 1; r < w_; ++r) {
      if (std::memcmp(peers_[r].grad.data(), peers_[0].grad.data(), p_ * sizeof(float)) != 0) {
        return false;
      }
    }
    return true;
  }

 private:
  struct Stamp {
    Clock::time_point* at;
    void operator()() noexcept { *at = Clock::now(); }
  };

  struct Peer {
    std::unique_ptr<broker::Transport> transport;
    std::optional<Mailbox> mailbox;
    std::unique_ptr<Strategy> strategy;
    std::vector<float> grad;
    broker::Bytes payload;  // kAllgather
    Status status;
  };

  Group(Kind kind, int w, size_t p, Mode mode)
      : kind_(kind),
        w_(w),
        p_(p),
        mode_(mode),
        peers_(w),
        start_(w + 1, Stamp{&round_start_}),
        done_(w + 1, Stamp{&round_end_}) {}

  Status Start() {
    run_id_ = UniqueRunId();
    if (kind_ == Kind::kZmqIpc) {
      std::string tmpl = (std::filesystem::temp_directory_path() / "p2p-bench-XXXXXX").string();
      if (::mkdtemp(tmpl.data()) == nullptr) return IoError("mkdtemp {} failed", tmpl);
      ipc_dir_ = tmpl;
    }
    P2P_ASSIGN_OR_RETURN(auto transports, MakeTransports(kind_, w_, run_id_, ipc_dir_));
    for (int r = 0; r < w_; ++r) {
      Peer& peer = peers_[r];
      peer.transport = std::move(transports[r]);
      if (mode_ == Mode::kAllgather) {
        peer.payload.assign(p_ * sizeof(float), std::byte{static_cast<unsigned char>(r)});
        continue;
      }
      peer.grad.resize(p_);
      // Distinct, well-scaled values per rank: the averages never become denormal.
      for (size_t i = 0; i < p_; ++i) {
        peer.grad[i] = 0.001f * static_cast<float>(i % 997) - 0.25f * static_cast<float>(r);
      }
    }
    for (int r = 0; r < w_; ++r) threads_.emplace_back([this, r] { Work(peers_[r]); });
    started_ = true;
    done_.arrive_and_wait();  // every peer connected (or failed to)
    for (int r = 0; r < w_; ++r) {
      if (!peers_[r].status.ok()) {
        return peers_[r].status.Annotate(fmt::format("{} rank {} connecting", KindName(kind_), r));
      }
    }
    return Status::Ok();
  }

  void Work(Peer& peer) {
    peer.status = peer.transport->Connect(broker::DeadlineIn(kConnectTimeout));
    if (peer.status.ok()) {
      peer.mailbox.emplace(*peer.transport, Mailbox::Options{.run_id = run_id_});
      // "STRATEGY+CODEC" runs STRATEGY with --compression CODEC.
      const size_t plus = strategy_name_.find('+');
      StrategyOptions options = BenchStrategyOptions();
      if (plus != std::string::npos) {
        auto codec = codecs::ParseCodecSpec(strategy_name_.substr(plus + 1));
        P2P_CHECK(codec.ok(), "{}", codec.status().ToString());
        options.codec = *codec;
      }
      auto s = MakeStrategy(
          mode_ == Mode::kSyncRs ? "reduce-scatter-average" : strategy_name_.substr(0, plus),
          *peer.mailbox, options);
      if (s.ok()) {
        peer.strategy = std::move(s).value();
      } else {
        peer.status = s.status();
      }
    }
    done_.arrive_and_wait();
    while (true) {
      start_.arrive_and_wait();
      if (stop_) break;
      if (peer.status.ok()) {
        switch (mode_) {
          case Mode::kSync:
          case Mode::kSyncRs:
            peer.status = peer.strategy->Average({0, step_}, kSamples, peer.grad);
            break;
          case Mode::kAllgather:
            peer.status = AllgatherRound(peer);
            break;
          case Mode::kReduceScatter:
            peer.status = ReduceScatterRound(peer);
            break;
        }
      }
      done_.arrive_and_wait();
    }
    (void)peer.transport->Close();  // in the owning thread: ZeroMQ sockets are single-threaded
  }

  // Rounds are aligned by the barriers, so this round's W-1 messages are exactly the next ones.
  Status AllgatherRound(Peer& peer) {
    P2P_RETURN_IF_ERROR(peer.transport->Broadcast(peer.payload));
    const broker::Deadline deadline = broker::DeadlineIn(BenchStrategyOptions().peer_timeout);
    for (int got = 0; got < w_ - 1; ++got) {
      P2P_ASSIGN_OR_RETURN(std::optional<broker::Message> m, peer.transport->Receive(deadline));
      if (!m) return Timeout("raw round {}: only {} of {} messages", step_, got, w_ - 1);
      if (m->payload.size() != peer.payload.size()) {
        return DataLoss("raw round {}: {} bytes from rank {}", step_, m->payload.size(),
                        m->from_rank);
      }
    }
    return Status::Ok();
  }

  // [begin, end) of slice j of the gradient.
  std::pair<size_t, size_t> Slice(int j) const {
    const size_t n = (p_ + static_cast<size_t>(w_) - 1) / static_cast<size_t>(w_);
    const size_t begin = std::min(p_, static_cast<size_t>(j) * n);
    return {begin, std::min(p_, begin + n)};
  }

  // Raw message: 1 phase byte, then floats.
  static broker::Bytes Pack(uint8_t phase, std::span<const float> values) {
    broker::Bytes b(1 + values.size_bytes());
    b[0] = std::byte{phase};
    std::memcpy(b.data() + 1, values.data(), values.size_bytes());
    return b;
  }

  Status ReduceScatterRound(Peer& peer) {
    const int me = peer.transport->rank();
    for (int j = 0; j < w_; ++j) {  // phase 1: slice j to its owner
      if (j == me) continue;
      const auto [b, e] = Slice(j);
      P2P_RETURN_IF_ERROR(peer.transport->Send(j, Pack(1, std::span(peer.grad).subspan(b, e - b))));
    }
    // A fast peer's phase-2 message may overtake a slow peer's phase-1 one: sort by phase.
    std::vector<std::optional<broker::Message>> got[2];
    got[0].resize(w_);
    got[1].resize(w_);
    int have[2] = {0, 0};
    const broker::Deadline deadline = broker::DeadlineIn(BenchStrategyOptions().peer_timeout);
    auto await = [&](int phase) -> Status {
      while (have[phase - 1] < w_ - 1) {
        P2P_ASSIGN_OR_RETURN(std::optional<broker::Message> m, peer.transport->Receive(deadline));
        if (!m) return Timeout("reduce-scatter round {}: phase {} incomplete", step_, phase);
        const int ph = m->payload.empty() ? 0 : std::to_integer<int>(m->payload[0]);
        if (ph != 1 && ph != 2) return DataLoss("reduce-scatter: bad phase {}", ph);
        const int from = m->from_rank;
        got[ph - 1][from] = std::move(m);
        ++have[ph - 1];
      }
      return Status::Ok();
    };
    P2P_RETURN_IF_ERROR(await(1));
    const auto [b, e] = Slice(me);
    const float weight = 1.0f / static_cast<float>(w_);
    std::vector<float> sum(e - b, 0.0f);
    for (int r = 0; r < w_; ++r) {  // rank order, so the sum is the same wherever it is computed
      const std::byte* src = r == me ? reinterpret_cast<const std::byte*>(peer.grad.data() + b)
                                     : got[0][r]->payload.data() + 1;
      for (size_t i = 0; i < sum.size(); ++i) {
        float v;
        std::memcpy(&v, src + i * sizeof(float), sizeof(float));
        sum[i] += weight * v;
      }
    }
    std::copy(sum.begin(), sum.end(), peer.grad.begin() + static_cast<std::ptrdiff_t>(b));
    P2P_RETURN_IF_ERROR(peer.transport->Broadcast(Pack(2, sum)));  // phase 2: the reduced slice
    P2P_RETURN_IF_ERROR(await(2));
    for (int r = 0; r < w_; ++r) {
      if (r == me) continue;
      const auto [rb, re] = Slice(r);
      if (got[1][r]->payload.size() != 1 + (re - rb) * sizeof(float)) {
        return DataLoss("reduce-scatter: slice of {} bytes from rank {}", got[1][r]->payload.size(),
                        r);
      }
      std::memcpy(peer.grad.data() + rb, got[1][r]->payload.data() + 1, (re - rb) * sizeof(float));
    }
    return Status::Ok();
  }

  void Stop() {
    if (started_) {
      stop_ = true;
      start_.arrive_and_wait();
      for (std::thread& t : threads_) t.join();
      started_ = false;
    }
    if (!ipc_dir_.empty()) {
      std::error_code ec;
      std::filesystem::remove_all(ipc_dir_, ec);
    }
  }

  const Kind kind_;
  const int w_;
  const size_t p_;
  const Mode mode_;
  std::string run_id_, ipc_dir_, strategy_name_;
  std::vector<Peer> peers_;
  std::vector<std::thread> threads_;
  bool started_ = false;
  // Written by the main thread before it arrives at start_; read by the peers after it.
  bool stop_ = false;
  uint64_t step_ = 0;
  Clock::time_point round_start_, round_end_;
  std::barrier<Stamp> start_, done_;
};

// ------------------------------------------------------------------ the round benchmark

// Peak resident memory of this process: VmHWM, reset to the current RSS by writing "5" to
// /proc/self/clear_refs (Linux >= 4.0), so each case reports its own peak. 0 when unreadable.
double PeakRssBytes() {
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stod(line.substr(6)) * 1024.0;  // in kB
  }
  return 0;
}
void ResetPeakRss() { std::ofstream("/proc/self/clear_refs") << "5"; }

// CPU time and page faults of this whole process (every peer thread and transport thread).
struct Usage {
  double cpu_seconds = 0, sys_seconds = 0;
  double minor_faults = 0;
  static Usage Now() {
    rusage ru{};
    ::getrusage(RUSAGE_SELF, &ru);
    auto secs = [](const timeval& tv) { return double(tv.tv_sec) + double(tv.tv_usec) * 1e-6; };
    return {secs(ru.ru_utime) + secs(ru.ru_stime), secs(ru.ru_stime), double(ru.ru_minflt)};
  }
};

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

// Medians of the zmq (tcp) cases that ran, by (W, P), for the amqp comparison.
std::map<std::pair<int64_t, int64_t>, double>& ZmqMedians() {
  static std::map<std::pair<int64_t, int64_t>, double> medians;
  return medians;
}

// Counters and a label comparing the case with the targets, where it sets one.
void ReportTargets(benchmark::State& state, Kind kind, int64_t w, int64_t p, double median_ms) {
  const auto zmq = ZmqMedians().find({w, p});
  const bool have_zmq = zmq != ZmqMedians().end();
  if (kind == Kind::kAmqp && have_zmq) state.counters["x_zmq"] = median_ms / zmq->second;
  if (w != kTargetW || p != kTargetP) return;
  if (kind == Kind::kZmqTcp) {
    state.counters["target_ms"] = kGlooMs;
    state.SetLabel(fmt::format("target <= {} ms (gloo all-reduce 4x1M): {}", kGlooMs,
                               median_ms <= kGlooMs ? "MET" : "MISSED"));
  } else if (kind == Kind::kAmqp) {
    const double target = have_zmq ? std::min(kPikaMs / 2, 3 * zmq->second) : kPikaMs / 2;
    state.counters["target_ms"] = target;
    state.SetLabel(fmt::format("target <= {} ms (pika {} ms / 2{}): {}", target, kPikaMs,
                               have_zmq ? fmt::format(", 3 x zmq {:.1f} ms", zmq->second)
                                        : std::string(" ; zmq case not run"),
                               median_ms <= target ? "MET" : "MISSED"));
  }
}

void BM_SyncRound(benchmark::State& state, Kind kind, int warmup, Mode mode) {
  const int64_t w = state.range(0), p = state.range(1);
  // A broker that could not be reached once is not waited for again (kConnectTimeout per case).
  static std::string amqp_failure;
  if (kind == Kind::kAmqp && !amqp_failure.empty()) {
    state.SkipWithError(amqp_failure.c_str());
    return;
  }
  auto group = Group::Create(kind, static_cast<int>(w), static_cast<size_t>(p), mode);
  if (!group.ok()) {
    if (kind == Kind::kAmqp) amqp_failure = "amqp skipped: " + group.status().ToString();
    state.SkipWithError(group.status().ToString().c_str());
    return;
  }
  Group& g = **group;
  for (int i = 0; i < warmup; ++i) {  // connections, buffers and the broker's queues warm up
    if (auto t = g.RunRound(); !t.ok()) {
      state.SkipWithError(t.status().ToString().c_str());
      return;
    }
  }
  const SyncTimings before = g.Timings();
  ResetPeakRss();
  const Usage usage_before = Usage::Now();
  const std::optional<double> broker_before =
      kind == Kind::kAmqp ? BrokerCpuSeconds() : std::nullopt;
  std::vector<double> seconds;
  for (auto _ : state) {
    auto t = g.RunRound();
    if (!t.ok()) {
      state.SkipWithError(t.status().ToString().c_str());
      break;
    }
    state.SetIterationTime(*t);
    seconds.push_back(*t);
  }
  if (seconds.empty()) return;
  const Usage usage_after = Usage::Now();
  const std::optional<double> broker_after =
      kind == Kind::kAmqp ? BrokerCpuSeconds() : std::nullopt;
  if (!g.AllAgree()) {
    state.SkipWithError("peers disagree: the averages are not bitwise identical");
    return;
  }
  const double median = Median(seconds);
  const double bytes_per_peer = 4.0 * static_cast<double>(p) * static_cast<double>(w - 1);
  state.counters["median_ms"] = median * 1e3;
  state.counters["min_ms"] = *std::min_element(seconds.begin(), seconds.end()) * 1e3;
  state.counters["max_ms"] = *std::max_element(seconds.begin(), seconds.end()) * 1e3;
  state.counters["GBps"] = bytes_per_peer / median / 1e9;
  const double rounds = static_cast<double>(seconds.size());
  state.counters["cpu_ms"] = (usage_after.cpu_seconds - usage_before.cpu_seconds) / rounds * 1e3;
  state.counters["sys_ms"] = (usage_after.sys_seconds - usage_before.sys_seconds) / rounds * 1e3;
  state.counters["faults"] = (usage_after.minor_faults - usage_before.minor_faults) / rounds;
  // All W peers live in this process: the peak per peer, in units of one peer's gradient.
  state.counters["rss_x_grad"] = PeakRssBytes() / double(w) / (4.0 * double(p));
  if (broker_before && broker_after) {
    state.counters["broker_cpu_ms"] = (*broker_after - *broker_before) / rounds * 1e3;
  }
  if (const SyncTimings after = g.Timings(); after.rounds > before.rounds) {
    const double peer_rounds = static_cast<double>(after.rounds - before.rounds);
    state.counters["send_ms"] = (after.send_seconds - before.send_seconds) / peer_rounds * 1e3;
    state.counters["wait_ms"] = (after.wait_seconds - before.wait_seconds) / peer_rounds * 1e3;
    state.counters["reduce_ms"] =
        (after.reduce_seconds - before.reduce_seconds) / peer_rounds * 1e3;
    state.counters["encode_ms"] =
        (after.encode_seconds - before.encode_seconds) / peer_rounds * 1e3;
    state.counters["decode_ms"] =
        (after.decode_seconds - before.decode_seconds) / peer_rounds * 1e3;
  }
  if (const uint64_t rejects = g.Rejects(); rejects > 0) {
    state.counters["rejects"] = static_cast<double>(rejects);
  }
  if (mode == Mode::kSyncRs) ReportTargets(state, kind, w, p, median * 1e3);
  if (mode != Mode::kSync) return;
  if (kind == Kind::kZmqTcp) ZmqMedians()[{w, p}] = median * 1e3;
  ReportTargets(state, kind, w, p, median * 1e3);
}

// The comparative study's strategies side by side (docs/strategies.md): the round as above, and
// the payload bytes each peer's transport sent per round — the mean over peers and the busiest
// peer (an aggregator). x_gloo = gloo's 14 ms / this round, for 4 x 1M floats only.
void BM_StrategyRound(benchmark::State& state, Kind kind, std::string strategy) {
  const int64_t w = state.range(0), p = state.range(1);
  auto group =
      Group::Create(kind, static_cast<int>(w), static_cast<size_t>(p), Mode::kSync, strategy);
  if (!group.ok()) {
    state.SkipWithError(group.status().ToString().c_str());
    return;
  }
  Group& g = **group;
  if (auto t = g.RunRound(); !t.ok()) {  // connections and buffers warm up
    state.SkipWithError(t.status().ToString().c_str());
    return;
  }
  const std::vector<double> sent_before = g.BytesSent();
  std::vector<double> seconds;
  for (auto _ : state) {
    auto t = g.RunRound();
    if (!t.ok()) {
      state.SkipWithError(t.status().ToString().c_str());
      return;
    }
    state.SetIterationTime(*t);
    seconds.push_back(*t);
  }
  if (seconds.empty()) return;
  if (!g.AllAgree()) {
    state.SkipWithError("peers disagree: the averages are not bitwise identical");
    return;
  }
  const std::vector<double> sent_after = g.BytesSent();
  double total = 0, busiest = 0;
  for (size_t r = 0; r < sent_after.size(); ++r) {
    const double per_round = (sent_after[r] - sent_before[r]) / double(seconds.size());
    total += per_round;
    busiest = std::max(busiest, per_round);
  }
  const double median = Median(seconds);
  state.counters["median_ms"] = median * 1e3;
  state.counters["min_ms"] = *std::min_element(seconds.begin(), seconds.end()) * 1e3;
  state.counters["max_ms"] = *std::max_element(seconds.begin(), seconds.end()) * 1e3;
  state.counters["MB_peer"] = total / double(w) / 1e6;
  state.counters["MB_busiest"] = busiest / 1e6;
  if (w == kTargetW && p == kTargetP) state.counters["x_gloo"] = kGlooMs / (median * 1e3);
}

// ------------------------------------------------------------------ the copies, one at a time

// What one peer does per message outside the transport: encode (gradient body, then the msgpack
// envelope) on the sender; decode (envelope, then the gradient body) on every receiver.
broker::Envelope GradientEnvelope(std::span<const float> grad) {
  broker::Envelope env;
  env.run_id = "bench";
  env.type = broker::MessageType::kGradient;
  env.sender = 0;
  env.seq = 1;
  env.codec.id = "none";
  env.body = EncodeGradientBody(kSamples, grad);
  return env;
}

void BM_Encode(benchmark::State& state) {
  std::vector<float> grad(static_cast<size_t>(state.range(0)), 0.5f);
  for (auto _ : state) {
    auto bytes = broker::EncodeEnvelope(GradientEnvelope(grad));
    benchmark::DoNotOptimize(bytes);
  }
  state.SetBytesProcessed(state.iterations() * state.range(0) * 4);
}

void BM_Decode(benchmark::State& state) {
  std::vector<float> grad(static_cast<size_t>(state.range(0)), 0.5f);
  const broker::Bytes bytes = broker::EncodeEnvelope(GradientEnvelope(grad)).value();
  std::vector<float> out(grad.size());
  for (auto _ : state) {
    auto env = broker::DecodeEnvelope(bytes);
    auto n = DecodeGradientBody(env->body, out);
    benchmark::DoNotOptimize(n);
  }
  state.SetBytesProcessed(state.iterations() * state.range(0) * 4);
}

// One plain copy of the gradient: the unit the two above are made of.
void BM_Memcpy(benchmark::State& state) {
  std::vector<float> a(static_cast<size_t>(state.range(0)), 0.5f), b(a.size());
  for (auto _ : state) {
    std::memcpy(b.data(), a.data(), a.size() * sizeof(float));
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * state.range(0) * 4);
}

// ------------------------------------------------------------------ registration

constexpr int64_t kWs[] = {2, 4, 8};
struct SizePlan {
  int64_t p;
  int rounds;  // timed rounds per case: a default run of every case takes a few minutes
  int warmup;
};
constexpr SizePlan kPlans[] = {{100'000, 60, 3}, {1'000'000, 30, 2}, {10'000'000, 3, 1}};

// The sizes to run: kPlans, or the comma-separated P values of $P2P_BENCH_SIZES (bench/
// sync_vs_gloo.sh uses it to add 100M), with timed rounds chosen by size as in kPlans.
const std::vector<SizePlan>& Plans() {
  static const std::vector<SizePlan> plans = [] {
    const char* env = std::getenv("P2P_BENCH_SIZES");
    if (env == nullptr || *env == '\0')
      return std::vector<SizePlan>(std::begin(kPlans), std::end(kPlans));
    std::vector<SizePlan> out;
    std::string list(env);
    for (size_t at = 0; at <= list.size();) {
      const size_t comma = std::min(list.find(',', at), list.size());
      const std::string item = list.substr(at, comma - at);
      char* end = nullptr;
      const long long p = std::strtoll(item.c_str(), &end, 10);
      if (item.empty() || *end != '\0' || p < 1 || p > 1'000'000'000) {
        std::fprintf(stderr,
                     "sync_round_bench: P2P_BENCH_SIZES='%s': '%s' is not a float count in "
                     "[1, 1e9] (expected e.g. 1000000,10000000)\n",
                     env, item.c_str());
        std::exit(2);
      }
      const int rounds = p <= 100'000 ? 60 : p <= 1'000'000 ? 30 : p <= 10'000'000 ? 5 : 3;
      out.push_back({p, rounds, p <= 1'000'000 ? 2 : 1});
      at = comma + 1;
    }
    return out;
  }();
  return plans;
}

void Register(const char* group, Kind kind, Mode mode) {
  for (const SizePlan& plan : Plans()) {
    auto* b = benchmark::RegisterBenchmark(fmt::format("{}/{}", group, KindName(kind)).c_str(),
                                           BM_SyncRound, kind, plan.warmup, mode);
    for (int64_t w : kWs) b->Args({w, plan.p});
    b->ArgNames({"W", "P"})
        ->Iterations(plan.rounds)
        ->UseManualTime()
        ->Unit(benchmark::kMillisecond);
  }
}

// strat/STRATEGY/TRANSPORT/W:w/P:p for 4 and 8 peers x 1M and 10M floats.
void RegisterStrategies() {
  const char* strategies[] = {
      "allgather-average",          "reduce-scatter-average", "allreduce-master",
      "hierarchical:shards=2",      "k-reduce:k=3",           "allgather-average+qsgd",
      "reduce-scatter-average+qsgd"};
  for (Kind kind : {Kind::kZmqTcp, Kind::kAmqp}) {
    for (const char* strategy : strategies) {
      for (const SizePlan& plan : {SizePlan{1'000'000, 10, 1}, SizePlan{10'000'000, 3, 1}}) {
        benchmark::RegisterBenchmark(fmt::format("strat/{}/{}", strategy, KindName(kind)).c_str(),
                                     BM_StrategyRound, kind, std::string(strategy))
            ->Args({4, plan.p})
            ->Args({8, plan.p})
            ->ArgNames({"W", "P"})
            ->Iterations(plan.rounds)
            ->UseManualTime()
            ->Unit(benchmark::kMillisecond);
      }
    }
  }
}

void RegisterAll() {
  // zmq before amqp, so the amqp cases can be compared with the zmq round of the same size.
  for (Kind kind : {Kind::kInProc, Kind::kZmqTcp, Kind::kZmqIpc, Kind::kAmqp}) {
    Register("round", kind, Mode::kSync);
  }
  for (Kind kind : {Kind::kInProc, Kind::kZmqTcp, Kind::kZmqIpc, Kind::kAmqp}) {
    Register("round_rs", kind, Mode::kSyncRs);
  }
  for (Kind kind : {Kind::kZmqTcp, Kind::kZmqIpc, Kind::kAmqp}) {
    Register("xport", kind, Mode::kAllgather);
  }
  for (Kind kind : {Kind::kZmqTcp, Kind::kZmqIpc, Kind::kAmqp}) {
    Register("xport_rsag", kind, Mode::kReduceScatter);
  }
  RegisterStrategies();
  using Fn = void (*)(benchmark::State&);
  const std::pair<const char*, Fn> envelope[] = {{"envelope/encode", BM_Encode},
                                                 {"envelope/decode", BM_Decode},
                                                 {"envelope/memcpy", BM_Memcpy}};
  for (const auto& [name, fn] : envelope) {
    benchmark::RegisterBenchmark(name, fn)
        ->ArgName("P")
        ->Arg(100'000)
        ->Arg(1'000'000)
        ->Arg(10'000'000)
        ->Unit(benchmark::kMillisecond);
  }
}

}  // namespace
}  // namespace p2p::sync

int main(int argc, char** argv) {
  p2p::KeepFreedMemoryForReuse();  // as p2ptrain does
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  p2p::sync::RegisterAll();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
