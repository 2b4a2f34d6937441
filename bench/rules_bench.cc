// Aggregation rule throughput (sync/rules/): one rule combining W gradients of P float32 values
// on one thread, for W = 4, 8, 16 and P = 1M, 10M. Inputs are N(0, 1), one of them x-10 (a sign
// flipper), all with 64 samples.
//
// Counters: GBps = W x 4P bytes of input per second (decimal GB).
// The targets: mean >= 50 % of memory bandwidth; median and trimmed-mean <= 10 x
// mean; Krum <= one W x P pass per pair.
// Run: rules_bench [--benchmark_filter=krum]
#include <benchmark/benchmark.h>

#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "sync/rules/rule.h"

namespace p2p::sync::rules {
namespace {

const std::vector<std::vector<float>>& Grads(size_t w, size_t p) {
  static std::map<std::pair<size_t, size_t>, std::vector<std::vector<float>>> cache;
  auto& g = cache[{w, p}];
  if (g.empty()) {
    std::mt19937 rng(1);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    g.assign(w, std::vector<float>(p));
    for (auto& v : g)
      for (float& x : v) x = normal(rng);
    for (float& x : g[1]) x *= -10.0f;
  }
  return g;
}

void BM_Rule(benchmark::State& state, const std::string& spec) {
  const size_t w = static_cast<size_t>(state.range(0)), p = static_cast<size_t>(state.range(1));
  const auto& g = Grads(w, p);
  std::vector<Input> inputs;
  for (const auto& v : g) inputs.push_back({v, 64});
  auto rule = MakeRule(spec);
  if (!rule.ok()) {
    state.SkipWithError(rule.status().message().c_str());
    return;
  }
  std::vector<float> out(p);
  for (auto _ : state) {
    const Status s = (*rule)->Aggregate(inputs, out);
    if (!s.ok()) state.SkipWithError(s.message().c_str());
    benchmark::DoNotOptimize(out.data());
  }
  const double bytes = static_cast<double>(w * p * sizeof(float));
  state.counters["GBps"] = benchmark::Counter(bytes * static_cast<double>(state.iterations()) / 1e9,
                                              benchmark::Counter::kIsRate);
  state.SetLabel(spec);
}

void Shapes(benchmark::internal::Benchmark* b) {
  for (int64_t p : {1 << 20, 10 << 20})
    for (int64_t w : {4, 8, 16}) b->Args({w, p});
  b->Unit(benchmark::kMillisecond)->MeasureProcessCPUTime();
}

const char* kSpecs[] = {"mean",      "median",         "trimmed-mean:beta=0.2",
                        "krum:f=1",  "multi-krum:f=1", "bulyan:f=1",
                        "geomedian", "centered-clip"};

int Register() {
  for (const char* spec : kSpecs) {
    benchmark::RegisterBenchmark(spec, [spec](benchmark::State& s) {
      BM_Rule(s, spec);
    })->Apply(Shapes);
  }
  return 0;
}
const int registered = Register();

}  // namespace
}  // namespace p2p::sync::rules

BENCHMARK_MAIN();
