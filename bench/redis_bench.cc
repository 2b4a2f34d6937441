// SPIRT's claim, measured: averaging + update inside the database (p2ptrain_redis.so) vs the same
// work client-side (fetch, compute in the process, write back), on one private redis-server.
//
// One round for a peer with K function gradients and W peers, P floats each:
//   in-db:       P2P.LAVG own <list of K>; P2P.AVG agg own other_1..other_{W-1};
//                P2P.UPDATE params agg STATE state OPT sgd LR 0.02 MOMENTUM 0.9 STEP t
//   client-side: LRANGE the K gradients, GET the W-1 other averages, GET params and state,
//                mean (sync/rules) + SGD step (ml/ kernels) in the process, SET params and state.
// The other peers' averages sit in the same database in both modes (fetching them from the other
// peers' databases costs the same either way). Both modes start from the same values and must
// end with bitwise the same parameters; the program exits 1 otherwise. A memcpy of a large
// buffer gives this machine's memory bandwidth for scale.
//
// Usage: redis_bench [--quick | --p N]   (--quick: P = 1M only; --p: that P only)
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "common/malloc_tuning.h"
#include "ml/optimizer_kernels.h"
#include "store/blob.h"
#include "store/client.h"
#include "sync/rules/mean.h"
#include "tests/store/redis_server.h"

namespace {

using Clock = std::chrono::steady_clock;
using p2p::store::RedisClient;

constexpr int kK = 4;
constexpr float kLr = 0.02f, kMomentum = 0.9f;

double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

std::vector<float> Random(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, 0.01f);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

void Must(const p2p::Status& s, const char* what) {
  if (!s.ok()) {
    std::fprintf(stderr, "redis_bench: %s: %s\n", what, s.ToString().c_str());
    std::exit(1);
  }
}

// Best-of-5 memcpy of 256 MiB; bytes read + written per second.
double MemcpyBandwidth() {
  const size_t n = 256u << 20;
  std::vector<char> a(n, 1), b(n, 2);
  double best = 1e9;
  for (int i = 0; i < 5; ++i) {
    const auto t0 = Clock::now();
    std::memcpy(b.data(), a.data(), n);
    best = std::min(best, Seconds(t0, Clock::now()));
    a[i] = b[n - 1 - i];  // keep the copies observable
  }
  return 2.0 * n / best;
}

struct Times {
  double lavg = 0, avg = 0, update = 0, total = 0;
};

Times InDbRound(RedisClient& db, int w, int step) {
  std::vector<std::string> avg = {"P2P.AVG", "agg", "own"};
  for (int i = 1; i < w; ++i) avg.push_back("other" + std::to_string(i));
  std::vector<std::string_view> avg_args(avg.begin(), avg.end());
  const std::string t = std::to_string(step);
  Times r;
  const auto t0 = Clock::now();
  Must(db.Command({"P2P.LAVG", "own", "grads"}).status(), "P2P.LAVG");
  const auto t1 = Clock::now();
  Must(db.Command(avg_args).status(), "P2P.AVG");
  const auto t2 = Clock::now();
  Must(db.Command({"P2P.UPDATE", "params_db", "agg", "STATE", "state_db", "OPT", "sgd", "LR",
                   "0.02", "MOMENTUM", "0.9", "STEP", t})
           .status(),
       "P2P.UPDATE");
  const auto t3 = Clock::now();
  r.lavg = Seconds(t0, t1);
  r.avg = Seconds(t1, t2);
  r.update = Seconds(t2, t3);
  r.total = Seconds(t0, t3);
  return r;
}

std::vector<float> Decode(std::string_view blob) { return p2p::store::DecodeBlob(blob).value(); }

void Mean(const std::vector<std::vector<float>>& in, std::vector<float>& out) {
  p2p::sync::rules::MeanAccumulator acc(out, in.size());
  for (const auto& g : in) acc.Add(g, 1);
}

double ClientRound(RedisClient& db, int w, int step, size_t p) {
  const auto t0 = Clock::now();
  auto list = db.Command({"LRANGE", "grads", "0", "-1"});
  Must(list.status(), "LRANGE");
  std::vector<std::vector<float>> grads;
  for (const auto& e : list->elements) grads.push_back(Decode(e.str));
  std::vector<std::vector<float>> peers(1, std::vector<float>(p));
  Mean(grads, peers[0]);
  for (int i = 1; i < w; ++i) peers.push_back(db.GetBlob("other" + std::to_string(i)).value());
  std::vector<float> agg(p);
  Mean(peers, agg);
  std::vector<float> params = db.GetBlob("params_cs").value();
  std::vector<float> state =
      step == 1 ? std::vector<float>(p, 0.0f) : db.GetBlob("state_cs").value();
  p2p::ml::kernels::SgdUpdate({kLr, kMomentum, 0.0f, false}, step, params.data(), agg.data(),
                              state.data(), p);
  Must(db.SetBlob("params_cs", params), "SET params");
  Must(db.SetBlob("state_cs", state), "SET state");
  return Seconds(t0, Clock::now());
}

}  // namespace

int main(int argc, char** argv) {
  // As p2ptrain's peers do: without it every client-side round page-faults its buffers in again.
  p2p::KeepFreedMemoryForReuse();
  const std::string mode = argc > 1 ? argv[1] : "";
  const double bw = MemcpyBandwidth();
  std::printf("memcpy bandwidth: %.1f GB/s (read + write)\n", bw / 1e9);
  // redis-server's jemalloc returns freed pages to the kernel after a short decay; P2P.LAVG's
  // per-element copies (RedisModule_ListGet) then fault tens of MB in again every call (3.1 s vs
  // 0.19 s per 4 x 10M-float LAVG on the test VM). Keep them, as the peers' KeepFreedMemoryForReuse
  // does for glibc; scripts/start-redis.sh does the same. MALLOC_CONF set by the caller wins.
  setenv("MALLOC_CONF", "dirty_decay_ms:-1,muzzy_decay_ms:-1", /*overwrite=*/0);
  p2p::test::RedisServer server;
  if (!server.ready()) {
    std::fprintf(stderr, "redis_bench: redis-server did not start:\n%s\n", server.log().c_str());
    return 1;
  }
  RedisClient db = std::move(server.Connect().value());
  std::printf("%-9s %2s %10s %10s %10s %10s %12s %9s %8s\n", "P", "W", "lavg_ms", "avg_ms",
              "update_ms", "in_db_ms", "client_ms", "saving", "avg_bw");
  std::vector<size_t> sizes = {1'000'000, 10'000'000};
  if (mode == "--quick") sizes = {1'000'000};
  if (mode == "--p" && argc > 2) sizes = {std::stoul(argv[2])};
  bool identical = true;
  for (size_t p : sizes) {
    const int reps = p >= 10'000'000 ? 3 : 5;
    for (int w : {2, 4, 8}) {
      Must(db.Command({"FLUSHDB"}).status(), "FLUSHDB");
      for (int k = 0; k < kK; ++k) {
        Must(db.Command({"RPUSH", "grads", p2p::store::EncodeBlob(Random(p, 10 + k))}).status(),
             "RPUSH");
      }
      for (int i = 1; i < w; ++i)
        Must(db.SetBlob("other" + std::to_string(i), Random(p, 100 + i)), "SET");
      const std::vector<float> init = Random(p, 7);
      Must(db.SetBlob("params_db", init), "SET");
      Must(db.SetBlob("params_cs", init), "SET");
      std::vector<double> lavg, avg, upd, indb, client;
      for (int step = 1; step <= reps; ++step) {
        const Times t = InDbRound(db, w, step);
        lavg.push_back(t.lavg);
        avg.push_back(t.avg);
        upd.push_back(t.update);
        indb.push_back(t.total);
        client.push_back(ClientRound(db, w, step, p));
      }
      const bool same = db.GetBlob("params_db").value() == db.GetBlob("params_cs").value();
      identical = identical && same;
      const double avg_bytes = 4.0 * p * (w + 1);  // W inputs read, one output written
      std::printf("%-9zu %2d %10.2f %10.2f %10.2f %10.2f %12.2f %8.1f%% %7.0f%%%s\n", p, w,
                  1e3 * Median(lavg), 1e3 * Median(avg), 1e3 * Median(upd), 1e3 * Median(indb),
                  1e3 * Median(client), 100.0 * (1.0 - Median(indb) / Median(client)),
                  100.0 * avg_bytes / Median(avg) / bw, same ? "" : "  PARAMS DIFFER");
      std::fflush(stdout);
    }
  }
  if (!identical) {
    std::fprintf(stderr, "redis_bench: in-db and client-side parameters differ\n");
    return 1;
  }
  std::printf("in-db and client-side parameters bitwise identical in every case\n");
  return 0;
}
