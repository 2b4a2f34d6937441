// Cost of authentication (docs/security.md explains the choice these numbers support).
//
// 1. Per message, for 1 KiB and 4 MiB bodies: RSA-PSS/SHA-256 sign and verify (3072- and 2048-bit
//    keys), HMAC-SHA-256 over the whole message, and p2ptrain's session slot (HMAC-SHA-256 over the
//    header and a Poly1305 tag of the body, crypto/session_mac.h) sealed and opened; plus the two
//    digests the schemes are made of (SHA-256, Poly1305).
// 2. The overhead on a sync round: 4 peers (threads of this process, each with its own ZmqTransport
//    on tcp://127.0.0.1, Mailbox and allgather-average Strategy, as in a peer process), 1M floats,
//    with no authentication, with the session authenticator (after a real join handshake), with
//    per-receiver HMAC-SHA-256 over the header and the body's SHA-256, and with RSA-PSS per
//    message. The four groups take turns round by round (see BM_Rounds). Counters per scheme:
//    <s>_ms (median round), <s>_cpu_ms (median process CPU time per round), <s>_pct and <s>_cpu_pct
//    (overhead over the unauthenticated round; the target is 5% of the round time).
//
// Run: crypto_bench [--benchmark_filter=round/]
#include <benchmark/benchmark.h>
#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <barrier>
#include <ctime>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>

#include "broker/envelope.h"
#include "broker/zmq_transport.h"
#include "crypto/handshake.h"
#include "crypto/mac.h"
#include "crypto/rsa.h"
#include "crypto/session_mac.h"
#include "sync/mailbox.h"
#include "sync/session_auth.h"
#include "sync/strategy.h"

namespace p2p {
namespace {

using Clock = std::chrono::steady_clock;
constexpr int kMaxPeers = 8;

// Keys are made on first use (outside timed regions); the lock makes lookups from peer threads
// safe.
const crypto::PrivateKey& Key(int bits, int i) {
  static std::mutex mu;
  static std::map<std::pair<int, int>, crypto::PrivateKey> keys;
  std::lock_guard lock(mu);
  auto it = keys.find({bits, i});
  if (it == keys.end()) {
    it = keys.emplace(std::pair{bits, i}, crypto::PrivateKey::Generate(bits).value()).first;
  }
  return it->second;
}

// A gradient envelope with `body_bytes` of body, as a peer sends it.
broker::Envelope Message(size_t body_bytes) {
  broker::Envelope env;
  env.run_id = "bench";
  env.type = broker::MessageType::kGradient;
  env.sender = 0;
  env.receiver = 1;
  env.epoch = 1;
  env.step = 7;
  env.seq = 42;
  env.codec.id = "none";
  env.body.assign(body_bytes, std::byte{0x5a});
  return env;
}

crypto::PairKeys BenchPairKeys() {
  crypto::PairKeys keys;
  keys.peer = 1;
  keys.send_header = crypto::RandomSecret(crypto::kMacKeyBytes).value();
  keys.send_body = crypto::RandomSecret(crypto::kMacKeyBytes).value();
  keys.recv_header = crypto::SecretBytes(keys.send_header.span());
  keys.recv_body = crypto::SecretBytes(keys.send_body.span());
  return keys;
}

// ------------------------------------------------------------------ per message

void SetBytes(benchmark::State& state, size_t n) {
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * n));
}

void BM_RsaPssSign(benchmark::State& state, int bits) {
  const auto env = Message(static_cast<size_t>(state.range(0)));
  const auto header = broker::SigningHeader(env);
  const crypto::ByteSpan pieces[] = {header, env.body};
  const crypto::PrivateKey& key = Key(bits, 0);
  for (auto _ : state) benchmark::DoNotOptimize(crypto::SignPss(key, pieces));
  SetBytes(state, env.body.size());
}

void BM_RsaPssVerify(benchmark::State& state, int bits) {
  const auto env = Message(static_cast<size_t>(state.range(0)));
  const auto header = broker::SigningHeader(env);
  const crypto::ByteSpan pieces[] = {header, env.body};
  const auto sig = crypto::SignPss(Key(bits, 0), pieces).value();
  for (auto _ : state) {
    if (!crypto::VerifyPss(Key(bits, 0).public_key(), pieces, sig)) state.SkipWithError("bad");
  }
  SetBytes(state, env.body.size());
}

// Signing and verifying cost the same: one HMAC over the message.
void BM_HmacSha256(benchmark::State& state) {
  const auto env = Message(static_cast<size_t>(state.range(0)));
  const auto header = broker::SigningHeader(env);
  const crypto::ByteSpan pieces[] = {header, env.body};
  const auto key = crypto::RandomSecret(crypto::kMacKeyBytes).value();
  for (auto _ : state) benchmark::DoNotOptimize(crypto::HmacSha256(key, pieces));
  SetBytes(state, env.body.size());
}

void BM_SessionSeal(benchmark::State& state) {
  const auto env = Message(static_cast<size_t>(state.range(0)));
  const auto header = broker::SigningHeader(env);
  const auto keys = BenchPairKeys();
  uint64_t seq = 0;
  for (auto _ : state) benchmark::DoNotOptimize(crypto::SealSlot(keys, ++seq, header, env.body));
  SetBytes(state, env.body.size());
}

void BM_SessionOpen(benchmark::State& state) {
  const auto env = Message(static_cast<size_t>(state.range(0)));
  const auto header = broker::SigningHeader(env);
  const auto keys = BenchPairKeys();
  const auto slot = crypto::SealSlot(keys, env.seq, header, env.body);
  for (auto _ : state) {
    if (crypto::OpenSlot(keys, env.seq, header, env.body, slot) != crypto::SlotVerdict::kOk) {
      state.SkipWithError("bad slot");
    }
  }
  SetBytes(state, env.body.size());
}

void BM_Sha256(benchmark::State& state) {
  const broker::Bytes body(static_cast<size_t>(state.range(0)), std::byte{1});
  const crypto::ByteSpan pieces[] = {body};
  for (auto _ : state) benchmark::DoNotOptimize(crypto::Sha256(pieces));
  SetBytes(state, body.size());
}

void BM_Poly1305(benchmark::State& state) {
  const broker::Bytes body(static_cast<size_t>(state.range(0)), std::byte{1});
  const auto key = crypto::RandomSecret(crypto::kMacKeyBytes).value();
  uint64_t nonce = 0;
  for (auto _ : state) benchmark::DoNotOptimize(crypto::Poly1305Tag(key, ++nonce, body));
  SetBytes(state, body.size());
}

// ------------------------------------------------------------------ the alternatives, as Mailbox
// authenticators (bench only: they model the cost; session_auth.h is what peers run)

// Rejects replays like the real one, so every scheme does the same bookkeeping.
class ReplayGuard {
 public:
  bool Fresh(const broker::Envelope& env) {
    uint64_t& last = last_[env.sender];
    if (env.seq <= last) return false;
    last = env.seq;
    return true;
  }

 private:
  std::map<int, uint64_t> last_;
};

// RSA-PSS per message: one signature by the sender's private key, verified with its public key.
class RsaPssAuthenticator final : public sync::Authenticator {
 public:
  RsaPssAuthenticator(int rank, int bits) : rank_(rank), bits_(bits) {}
  Status Sign(broker::Envelope& env) override {
    const auto header = broker::SigningHeader(env);
    const crypto::ByteSpan pieces[] = {header, env.body};
    P2P_ASSIGN_OR_RETURN(env.signature, crypto::SignPss(Key(bits_, rank_), pieces));
    return Status::Ok();
  }
  Verdict Verify(const broker::Envelope& env) override {
    const auto header = broker::SigningHeader(env);
    const crypto::ByteSpan pieces[] = {header, env.body};
    if (!crypto::VerifyPss(Key(bits_, env.sender).public_key(), pieces, env.signature)) {
      return {Action::kReject, "bad_signature", ""};
    }
    if (!guard_.Fresh(env)) return {Action::kReject, "replay", ""};
    return {};
  }

 private:
  int rank_, bits_;
  ReplayGuard guard_;
};

// Per-receiver HMAC-SHA-256 over the header and the body's SHA-256 (one SHA-256 pass per message
// on each side): the plain "session key + HMAC-SHA-256" scheme.
class HmacDigestAuthenticator final : public sync::Authenticator {
 public:
  HmacDigestAuthenticator(int rank, int size) : rank_(rank), size_(size) {}
  Status Sign(broker::Envelope& env) override {
    const auto header = broker::SigningHeader(env);
    const crypto::ByteSpan body[] = {env.body};
    const crypto::Sha256Digest digest = crypto::Sha256(body);
    const crypto::ByteSpan pieces[] = {header, digest};
    env.signature.clear();
    for (int r = 0; r < size_; ++r) {
      if (r == rank_ || (env.receiver != broker::kAllRanks && env.receiver != r)) continue;
      const auto tag = crypto::HmacSha256(PairKey(rank_, r), pieces);
      env.signature.insert(env.signature.end(), tag.begin(), tag.begin() + 16);
    }
    return Status::Ok();
  }
  Verdict Verify(const broker::Envelope& env) override {
    const auto header = broker::SigningHeader(env);
    const crypto::ByteSpan body[] = {env.body};
    const crypto::Sha256Digest digest = crypto::Sha256(body);
    const crypto::ByteSpan pieces[] = {header, digest};
    const auto tag = crypto::HmacSha256(PairKey(env.sender, rank_), pieces);
    const int index =
        env.receiver == broker::kAllRanks ? (rank_ < env.sender ? rank_ : rank_ - 1) : 0;
    if (env.signature.size() < static_cast<size_t>(index + 1) * 16 ||
        !crypto::ConstantTimeEqual(std::span(tag).first(16),
                                   std::span(env.signature).subspan(index * 16, 16))) {
      return {Action::kReject, "bad_mac", ""};
    }
    if (!guard_.Fresh(env)) return {Action::kReject, "replay", ""};
    return {};
  }

 private:
  static const crypto::SecretBytes& PairKey(int from, int to) {
    static const auto keys = [] {
      std::vector<crypto::SecretBytes> k;
      for (int i = 0; i < kMaxPeers * kMaxPeers; ++i) {
        k.push_back(crypto::RandomSecret(crypto::kMacKeyBytes).value());
      }
      return k;
    }();
    return keys[from * kMaxPeers + to];
  }
  int rank_, size_;
  ReplayGuard guard_;
};

// Measures the time its authenticator spends signing and verifying (thread CPU time, summed over
// the peers of a group).
class TimedAuthenticator final : public sync::Authenticator {
 public:
  TimedAuthenticator(sync::Authenticator& inner, std::atomic<int64_t>& ns)
      : inner_(inner), ns_(ns) {}
  Status Sign(broker::Envelope& env) override {
    const int64_t t = ThreadNs();
    Status s = inner_.Sign(env);
    ns_ += ThreadNs() - t;
    return s;
  }
  Verdict Verify(const broker::Envelope& env) override {
    const int64_t t = ThreadNs();
    Verdict v = inner_.Verify(env);
    ns_ += ThreadNs() - t;
    return v;
  }
  int MaxBroadcastReceivers() const override { return inner_.MaxBroadcastReceivers(); }

 private:
  static int64_t ThreadNs() {
    timespec ts{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
  }
  sync::Authenticator& inner_;
  std::atomic<int64_t>& ns_;
};

// ------------------------------------------------------------------ the sync round

enum class Scheme { kNone, kSession, kHmacSha256, kRsaPss };

const char* SchemeName(Scheme s) {
  switch (s) {
    case Scheme::kNone:
      return "none";
    case Scheme::kSession:
      return "session";
    case Scheme::kHmacSha256:
      return "hmac_sha256";
    case Scheme::kRsaPss:
      return "rsa_pss_3072";
  }
  return "?";
}

// W threads, each a peer; the main thread is the extra party of both barriers, whose
// completion steps time-stamp the start and end of a round.
class Group {
 public:
  static Result<std::unique_ptr<Group>> Create(Scheme scheme, int w, size_t p,
                                               std::string strategy) {
    auto g = std::unique_ptr<Group>(new Group(scheme, w, p, std::move(strategy)));
    P2P_RETURN_IF_ERROR(g->Start());
    return g;
  }
  ~Group() {
    if (!threads_.empty()) {
      stop_ = true;
      start_.arrive_and_wait();
      for (auto& t : threads_) t.join();
    }
  }

  Result<double> Round() {
    ++step_;
    start_.arrive_and_wait();
    done_.arrive_and_wait();
    for (int r = 0; r < w_; ++r) {
      if (!peers_[r].status.ok()) return peers_[r].status.Annotate(fmt::format("rank {}", r));
    }
    return std::chrono::duration<double>(end_ - begin_).count();
  }
  // CPU seconds spent in Sign and Verify by all peers so far.
  double AuthSeconds() const { return double(auth_ns_.load()) * 1e-9; }
  uint64_t Rejects() const {
    uint64_t n = 0;
    for (const auto& peer : peers_) n += peer.mailbox ? peer.mailbox->rejects().total() : 0;
    return n;
  }

 private:
  struct Stamp {
    Clock::time_point* at;
    void operator()() noexcept { *at = Clock::now(); }
  };
  struct Peer {
    std::unique_ptr<broker::Transport> transport;
    std::unique_ptr<sync::Authenticator> auth;
    std::unique_ptr<TimedAuthenticator> timed;
    sync::SessionAuthenticator* session = nullptr;
    std::optional<sync::Mailbox> mailbox;
    std::unique_ptr<sync::Strategy> strategy;
    std::vector<float> grad;
    Status status;
  };

  Group(Scheme scheme, int w, size_t p, std::string strategy)
      : scheme_(scheme),
        strategy_(std::move(strategy)),
        w_(w),
        p_(p),
        peers_(w),
        start_(w + 1, Stamp{&begin_}),
        done_(w + 1, Stamp{&end_}) {}

  Status Start() {
    static int run = 0;
    run_id_ = fmt::format("crypto-bench-{}", ++run);
    std::vector<broker::ZmqTransport*> zmq;
    std::vector<std::string> endpoints;
    for (int r = 0; r < w_; ++r) {
      broker::ZmqTransportOptions o;
      o.rank = r;
      o.size = w_;
      o.run_id = run_id_;
      o.bind_endpoint = "tcp://127.0.0.1:*";
      P2P_ASSIGN_OR_RETURN(auto t, broker::ZmqTransport::Create(std::move(o)));
      zmq.push_back(t.get());
      endpoints.push_back(t->bound_endpoint());
      peers_[r].transport = std::move(t);
      peers_[r].grad.resize(p_);
      for (size_t i = 0; i < p_; ++i) peers_[r].grad[i] = 0.001f * float(i % 997) - 0.25f * r;
      trust_.Add(Key(3072, r).public_key());  // keys are made before any thread needs them
      P2P_RETURN_IF_ERROR(MakeAuthenticator(r));
    }
    for (auto* t : zmq) P2P_RETURN_IF_ERROR(t->SetEndpoints(endpoints));
    for (int r = 0; r < w_; ++r) threads_.emplace_back([this, r] { Work(peers_[r]); });
    done_.arrive_and_wait();
    for (int r = 0; r < w_; ++r) P2P_RETURN_IF_ERROR(peers_[r].status);
    return Status::Ok();
  }

  Status MakeAuthenticator(int r) {
    Peer& peer = peers_[r];
    switch (scheme_) {
      case Scheme::kNone:
        return Status::Ok();
      case Scheme::kRsaPss:
        peer.auth = std::make_unique<RsaPssAuthenticator>(r, 3072);
        return Status::Ok();
      case Scheme::kHmacSha256:
        peer.auth = std::make_unique<HmacDigestAuthenticator>(r, w_);
        return Status::Ok();
      case Scheme::kSession: {
        P2P_ASSIGN_OR_RETURN(
            auto hs, crypto::JoinHandshake::Create({run_id_, w_, r, &Key(3072, r), &trust_}));
        auto session = std::make_unique<sync::SessionAuthenticator>(std::move(hs), r, w_);
        peer.session = session.get();
        peer.auth = std::move(session);
        return Status::Ok();
      }
    }
    return Status::Ok();
  }

  void Work(Peer& peer) {
    const auto deadline = broker::DeadlineIn(std::chrono::seconds(60));
    peer.status = peer.transport->Connect(deadline);
    if (peer.status.ok()) {
      if (peer.auth) peer.timed = std::make_unique<TimedAuthenticator>(*peer.auth, auth_ns_);
      peer.mailbox.emplace(
          *peer.transport,
          sync::Mailbox::Options{.run_id = run_id_, .authenticator = peer.timed.get()});
      if (peer.session != nullptr)
        peer.status = sync::JoinRun(*peer.mailbox, *peer.session, deadline);
    }
    if (peer.status.ok()) {
      auto s = sync::MakeStrategy(strategy_, *peer.mailbox, {});
      if (s.ok()) peer.strategy = std::move(s).value();
      peer.status = s.status();
    }
    done_.arrive_and_wait();
    while (true) {
      start_.arrive_and_wait();
      if (stop_) break;
      if (peer.status.ok()) peer.status = peer.strategy->Average({1, step_}, 64, peer.grad);
      done_.arrive_and_wait();
    }
    (void)peer.transport->Close();
  }

  const Scheme scheme_;
  const std::string strategy_;
  const int w_;
  const size_t p_;
  crypto::TrustStore trust_;
  std::string run_id_;
  std::vector<Peer> peers_;
  std::vector<std::thread> threads_;
  bool stop_ = false;
  uint64_t step_ = 0;
  Clock::time_point begin_, end_;
  std::atomic<int64_t> auth_ns_{0};
  std::barrier<Stamp> start_, done_;
};

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

double CpuSeconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + double(ts.tv_nsec) * 1e-9;
}

constexpr Scheme kSchemes[] = {Scheme::kNone, Scheme::kSession, Scheme::kHmacSha256,
                               Scheme::kRsaPss};

// One iteration = one round of every scheme, each with its own group of 4 peers, in rotating
// order: on a shared machine the load drifts, and interleaving gives every scheme the same share
// of it. Reports per scheme the median round (wall) and the median CPU time of the process during
// the round (all 4 peers, their ZeroMQ I/O threads; the other groups are idle), and both as an
// overhead over the unauthenticated round.
void BM_Rounds(benchmark::State& state, const char* strategy) {
  const int w = static_cast<int>(state.range(0));
  const size_t p = static_cast<size_t>(state.range(1));
  std::vector<std::unique_ptr<Group>> groups;
  for (Scheme s : kSchemes) {
    auto g = Group::Create(s, w, p, strategy);
    if (!g.ok()) return state.SkipWithError(g.status().ToString().c_str());
    groups.push_back(std::move(*g));
  }
  constexpr size_t kN = std::size(kSchemes);
  std::vector<std::vector<double>> wall(kN), cpu(kN);
  std::vector<double> auth_before(kN);
  size_t turn = 0;
  auto round = [&](size_t i, bool record) -> Status {
    const double c0 = CpuSeconds();
    P2P_ASSIGN_OR_RETURN(double t, groups[i]->Round());
    if (record) {
      wall[i].push_back(t);
      cpu[i].push_back(CpuSeconds() - c0);
    }
    return Status::Ok();
  };
  for (int w = 0; w < 3; ++w) {  // connections and buffers warm up
    for (size_t i = 0; i < kN; ++i) {
      if (Status st = round(i, false); !st.ok()) return state.SkipWithError(st.ToString().c_str());
    }
  }
  for (size_t i = 0; i < kN; ++i) auth_before[i] = groups[i]->AuthSeconds();
  for (auto _ : state) {
    double total = 0;
    for (size_t k = 0; k < kN; ++k) {
      const size_t i = (turn + k) % kN;
      if (Status st = round(i, true); !st.ok()) return state.SkipWithError(st.ToString().c_str());
      total += wall[i].back();
    }
    ++turn;
    state.SetIterationTime(total);
  }
  const double none_ms = Median(wall[0]) * 1e3, none_cpu = Median(cpu[0]) * 1e3;
  for (size_t i = 0; i < kN; ++i) {
    const std::string name = SchemeName(kSchemes[i]);
    const double ms = Median(wall[i]) * 1e3, cpu_ms = Median(cpu[i]) * 1e3;
    state.counters[name + "_ms"] = ms;
    state.counters[name + "_cpu_ms"] = cpu_ms;
    if (i == 0) continue;
    // Mean CPU per round spent signing and verifying, all peers together.
    state.counters[name + "_auth_cpu_ms"] =
        (groups[i]->AuthSeconds() - auth_before[i]) / double(wall[i].size()) * 1e3;
    state.counters[name + "_pct"] = (ms / none_ms - 1) * 100;
    state.counters[name + "_cpu_pct"] = (cpu_ms / none_cpu - 1) * 100;
  }
  uint64_t rejects = 0;
  for (const auto& g : groups) rejects += g->Rejects();
  if (rejects > 0) state.counters["rejects"] = double(rejects);
  const double session_pct = (Median(wall[1]) * 1e3 / none_ms - 1) * 100;
  state.SetLabel(fmt::format("session overhead {:.1f}% of the round (target <= 5%): {}",
                             session_pct, session_pct <= 5 ? "MET" : "MISSED"));
}

void RegisterAll() {
  using Fn = void (*)(benchmark::State&);
  const std::pair<const char*, Fn> per_message[] = {{"message/hmac_sha256", BM_HmacSha256},
                                                    {"message/session/seal", BM_SessionSeal},
                                                    {"message/session/open", BM_SessionOpen},
                                                    {"digest/sha256", BM_Sha256},
                                                    {"digest/poly1305", BM_Poly1305}};
  for (const auto& [name, fn] : per_message) {
    benchmark::RegisterBenchmark(name, fn)->Arg(1 << 10)->Arg(4 << 20)->Unit(
        benchmark::kMicrosecond);
  }
  for (int bits : {3072, 2048}) {
    benchmark::RegisterBenchmark(fmt::format("message/rsa_pss_{}/sign", bits).c_str(),
                                 BM_RsaPssSign, bits)
        ->Arg(1 << 10)
        ->Arg(4 << 20)
        ->Unit(benchmark::kMicrosecond);
    benchmark::RegisterBenchmark(fmt::format("message/rsa_pss_{}/verify", bits).c_str(),
                                 BM_RsaPssVerify, bits)
        ->Arg(1 << 10)
        ->Arg(4 << 20)
        ->Unit(benchmark::kMicrosecond);
  }
  // round/: allgather-average; round_rs/: reduce-scatter-average (the default for uncompressed
  // runs of 3+ peers), which MACs half the bytes per peer at W = 4.
  for (const auto& [group, strategy] :
       {std::pair{"round", "allgather-average"}, std::pair{"round_rs", "reduce-scatter-average"}}) {
    benchmark::RegisterBenchmark(fmt::format("{}/zmq/interleaved", group).c_str(), BM_Rounds,
                                 strategy)
        ->ArgNames({"W", "P"})
        ->Args({4, 1'000'000})  // the case
        ->Args({2, 1'000'000})  // one core per peer on a 2-core machine
        ->Args({4, 235'146})    // the default mlp (784-256-128-10)
        ->Iterations(40)
        ->UseManualTime()
        ->Unit(benchmark::kMillisecond);
  }
}

}  // namespace
}  // namespace p2p

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  p2p::RegisterAll();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
