// Offload benchmarks: cold start, warm invocation latency, invocation overhead relative to the
// compute it carries, and the gradient-computation time of an epoch's worth of minibatches with
// and without offload. Targets (issue 6): cold start median < 5 ms; overhead < 10% of compute at
// batch 64 (mlp); K = 2 at least 1.7x faster than no offload on this 2-core machine.
#include <benchmark/benchmark.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>

#include "common/malloc_tuning.h"
#include "ml/model.h"
#include "serverless_offload/param_store.h"
#include "serverless_offload/pool.h"

extern char** environ;

namespace p2p::offload {
namespace {

using Clock = std::chrono::steady_clock;

ml::ModelOptions MlpOptions() {
  ml::ModelOptions m;
  m.name = "mlp";
  m.input = {1, 28, 28};
  return m;
}

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::nth_element(v.begin(), v.begin() + v.size() / 2, v.end());
  return v[v.size() / 2];
}

struct Workload {
  std::unique_ptr<ml::Model> model;
  ParamStore store;
  ParamStore::Version version;
  std::vector<ml::Matrix> xs;
  std::vector<std::vector<int32_t>> ys;

  static Workload Make(const ml::ModelOptions& options, int batches, int batch) {
    auto model = std::move(ml::Model::Create(options)).value();
    model->Init(1);
    auto store = std::move(ParamStore::Create()).value();
    auto version = std::move(store.Publish(model->Params())).value();
    Workload w{std::move(model), std::move(store), version, {}, {}};
    for (int b = 0; b < batches; ++b) {
      w.xs.push_back(ml::Matrix::Random(batch, options.input.size()));
      std::vector<int32_t> y(batch);
      for (int i = 0; i < batch; ++i) y[i] = (b + i) % options.num_classes;
      w.ys.push_back(std::move(y));
    }
    return w;
  }

  Task MakeTask(uint64_t id, const ml::Matrix& x, std::span<const int32_t> y) const {
    Task t;
    t.id = id;
    t.model = model->options();
    t.params_path = version.path;
    t.params_version = version.version;
    t.num_params = model->NumParams();
    t.x = x;
    t.y.assign(y.begin(), y.end());
    return t;
  }
};

std::unique_ptr<FunctionPool> Pool(int functions, bool warm) {
  PoolOptions o;
  o.functions = functions;
  o.warm = warm;
  o.command = {P2P_FUNCTION_BIN};
  return std::move(MakeFunctionPool(o)).value();
}

// Spawn to result of a near-empty task (logreg on one 4-feature sample).
void BM_ColdStart(benchmark::State& state) {
  ml::ModelOptions tiny{.name = "logreg", .input = {1, 1, 4}, .num_classes = 2};
  auto w = Workload::Make(tiny, 1, 1);
  auto pool = Pool(1, /*warm=*/false);
  uint64_t id = 0;
  for (auto _ : state) {
    auto r = pool->RunAll({w.MakeTask(++id, w.xs[0], w.ys[0])});
    if (!r.ok()) state.SkipWithError(r.status().message().c_str());
  }
  state.counters["p50_ms"] = Median(pool->stats().latencies_ms);
  state.counters["target_p50_ms"] = 5;
}
BENCHMARK(BM_ColdStart)->Unit(benchmark::kMillisecond)->Iterations(50);

// A kept process: hand-off to result of the same tiny task.
void BM_WarmInvocation(benchmark::State& state) {
  ml::ModelOptions tiny{.name = "logreg", .input = {1, 1, 4}, .num_classes = 2};
  auto w = Workload::Make(tiny, 1, 1);
  auto pool = Pool(1, /*warm=*/true);
  (void)pool->RunAll({w.MakeTask(0, w.xs[0], w.ys[0])});  // the one cold start
  const size_t skip = pool->stats().latencies_ms.size();
  uint64_t id = 0;
  for (auto _ : state) {
    auto r = pool->RunAll({w.MakeTask(++id, w.xs[0], w.ys[0])});
    if (!r.ok()) state.SkipWithError(r.status().message().c_str());
  }
  const auto& l = pool->stats().latencies_ms;
  state.counters["p50_ms"] = Median({l.begin() + static_cast<std::ptrdiff_t>(skip), l.end()});
}
BENCHMARK(BM_WarmInvocation)->Unit(benchmark::kMillisecond)->Iterations(200);

// One warm invocation computing a batch-64 mlp gradient vs computing it in process.
void BM_OverheadMlpBatch64(benchmark::State& state) {
  auto w = Workload::Make(MlpOptions(), 1, 64);
  auto t0 = Clock::now();
  constexpr int kLocal = 50;
  for (int i = 0; i < kLocal; ++i) w.model->ComputeGradient(w.xs[0], w.ys[0]);
  const double local_ms =
      std::chrono::duration<double, std::milli>(Clock::now() - t0).count() / kLocal;
  auto pool = Pool(1, /*warm=*/true);
  (void)pool->RunAll({w.MakeTask(0, w.xs[0], w.ys[0])});
  const size_t skip = pool->stats().latencies_ms.size();
  uint64_t id = 0;
  std::vector<double> fn_compute_ms;
  for (auto _ : state) {
    auto r = pool->RunAll({w.MakeTask(++id, w.xs[0], w.ys[0])});
    if (!r.ok()) {
      state.SkipWithError(r.status().message().c_str());
      break;
    }
    fn_compute_ms.push_back(1000.0 * (*r)[0].compute_seconds);
  }
  const auto& l = pool->stats().latencies_ms;
  const double invoke_ms = Median({l.begin() + static_cast<std::ptrdiff_t>(skip), l.end()});
  state.counters["compute_ms"] = local_ms;
  state.counters["fn_compute_ms"] = Median(fn_compute_ms);
  state.counters["invocation_ms"] = invoke_ms;
  state.counters["overhead_pct"] = 100.0 * (invoke_ms - local_ms) / local_ms;
  state.counters["target_overhead_pct"] = 10;
}
BENCHMARK(BM_OverheadMlpBatch64)->Unit(benchmark::kMillisecond)->Iterations(100);

// The amqp backend: one `p2ptrain function --serve` worker on this host and a RabbitMQ broker
// (P2P_AMQP_URL; skipped without it). Per batch-64 mlp task: submit to result, with the
// parameters cached by the worker (range 0 = 0) or a new version every task (1: one parameter
// fetch per task, as with --sync-every 1).
void BM_AmqpMlpBatch64(benchmark::State& state) {
  const char* url = std::getenv("P2P_AMQP_URL");
  if (url == nullptr || *url == '\0') {
    state.SkipWithError("set P2P_AMQP_URL to a RabbitMQ (scripts/start-rabbitmq.sh)");
    for (auto _ : state) {
    }
    return;
  }
  const bool new_version = state.range(0) == 1;
  const std::string queue = fmt::format("bench-fn-{}", ::getpid());
  const std::string p2ptrain =
      std::string(P2P_FUNCTION_BIN).substr(0, std::string(P2P_FUNCTION_BIN).rfind('/') + 1) +
      "p2ptrain";
  std::vector<std::string> args = {p2ptrain, "function", "--serve", "--broker",
                                   url,      "--queue",  queue};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t worker = -1;
  if (::posix_spawn(&worker, argv[0], nullptr, nullptr, argv.data(), environ) != 0) {
    state.SkipWithError("cannot start the worker");
    return;
  }
  auto w = Workload::Make(MlpOptions(), 1, 64);
  PoolOptions o;
  o.backend = "amqp";
  o.broker = url;
  o.queue = queue;
  o.functions = 1;
  auto pool = std::move(MakeFunctionPool(o)).value();
  (void)pool->RunAll({w.MakeTask(0, w.xs[0], w.ys[0])});  // the worker's cold start
  const size_t skip = pool->stats().latencies_ms.size();
  uint64_t id = 0;
  for (auto _ : state) {
    if (new_version) w.version = std::move(w.store.Publish(w.model->Params())).value();
    auto r = pool->RunAll({w.MakeTask(++id, w.xs[0], w.ys[0])});
    if (!r.ok()) {
      state.SkipWithError(r.status().message().c_str());
      break;
    }
  }
  const auto& l = pool->stats().latencies_ms;
  state.counters["p50_ms"] = Median({l.begin() + static_cast<std::ptrdiff_t>(skip), l.end()});
  state.counters["params_sent"] = static_cast<double>(pool->stats().params_sent);
  pool.reset();
  ::kill(worker, SIGTERM);
  ::waitpid(worker, nullptr, 0);
}
BENCHMARK(BM_AmqpMlpBatch64)
    ->ArgName("new_version")
    ->Arg(0)
    ->Arg(1)
    ->Unit(benchmark::kMillisecond)
    ->Iterations(100);

// The gradient computation of 100 minibatches of 64 (mlp): K = 0 in process; otherwise K warm
// functions. range(1) = 0: each minibatch split into K parts (--sync-every 1); 1: every minibatch
// one task, all 100 in one round (--sync-every epoch, the study's fan-out).
// range(2) = 1: lenet5 instead of mlp (6x the compute per sample, a quarter of the parameters).
void BM_EpochGradient(benchmark::State& state) {
  const int k = static_cast<int>(state.range(0));
  const bool fan_out = state.range(1) == 1;
  constexpr int kBatches = 100;
  ml::ModelOptions options = MlpOptions();
  if (state.range(2) == 1) options.name = "lenet5";
  auto w = Workload::Make(options, kBatches, 64);
  std::unique_ptr<FunctionPool> pool = k > 0 ? Pool(k, /*warm=*/true) : nullptr;
  std::vector<float> grad(w.model->NumParams());
  uint64_t id = 0;
  double function_compute_s = 0;  // inside the functions: how much of the time is real work
  std::vector<double> task_compute_ms;
  for (auto _ : state) {
    if (k == 0) {
      for (int b = 0; b < kBatches; ++b) w.model->ComputeGradient(w.xs[b], w.ys[b]);
      continue;
    }
    std::vector<Task> round;
    std::vector<uint64_t> expected;
    for (int b = 0; b < kBatches; ++b) {
      const int parts = fan_out ? 1 : k;
      for (int p = 0; p < parts; ++p) {
        const int lo = 64 * p / parts, hi = 64 * (p + 1) / parts;
        round.push_back(w.MakeTask(++id, w.xs[b].middleRows(lo, hi - lo),
                                   std::span(w.ys[b]).subspan(lo, hi - lo)));
        expected.push_back(static_cast<uint64_t>(hi - lo));
      }
      if (fan_out && b + 1 < kBatches) continue;
      auto r = pool->RunAll(std::move(round));
      if (!r.ok() || !WeightedMean(*r, expected, grad).ok()) {
        state.SkipWithError("offload failed");
        break;
      }
      for (const auto& result : *r) {
        function_compute_s += result.compute_seconds;
        task_compute_ms.push_back(1000.0 * result.compute_seconds);
      }
      round.clear();
      expected.clear();
    }
  }
  state.counters["batches"] = kBatches;
  if (pool) {
    // Per invocation: submit to result, and how much of that was not the function computing.
    state.counters["fn_latency_p50_ms"] = Median(pool->stats().latencies_ms);
    state.counters["fn_compute_p50_ms"] = Median(task_compute_ms);
  }
  state.counters["fn_compute_ms_per_iter"] =
      1000.0 * function_compute_s / static_cast<double>(state.iterations());
}
BENCHMARK(BM_EpochGradient)
    ->ArgNames({"K", "fan_out", "lenet5"})
    ->Args({0, 0, 0})
    ->Args({1, 0, 0})
    ->Args({2, 0, 0})
    ->Args({4, 0, 0})
    ->Args({2, 1, 0})
    ->Args({4, 1, 0})
    ->Args({0, 0, 1})
    ->Args({2, 0, 1})
    ->Args({2, 1, 1})
    ->Unit(benchmark::kMillisecond)
    ->Iterations(3);

}  // namespace
}  // namespace p2p::offload

int main(int argc, char** argv) {
  p2p::KeepFreedMemoryForReuse();  // as p2ptrain does
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
