// Gradient codec throughput and size (sync/codecs/): encode and decode of P float32 values on one
// thread, for every codec, P = 1M and 10M.
//
// Counters: GBps = 4P bytes of float32 input per CPU second of this thread (decimal GB, for encode
// and for decode alike; CPU time, so that other work on a shared machine does not count),
// bits_per_coord = 8 x payload bytes / P, x_fp32 = 4P / payload bytes. For qsgd-elias also
// entropy = the empirical entropy (bits per coordinate) of the signed levels it codes,
// level_bits = the coded levels' bits per coordinate (the stream, without header and bucket
// norms) and x_entropy = level_bits / entropy.
//
// Inputs: "gaussian" (N(0, 1) values) for every codec; "mlp_grad" (a real gradient of the mlp
// model on a synthetic batch, tiled to P; heavy-tailed, many near-zero coordinates) for the
// quantisers, where the level statistics matter.
//
// After the table the targets are printed with the measured values:
//   qsgd encode+decode >= 1 GB/s per core; qsgd-elias >= 0.3 GB/s; qsgd 8-bit <= 9 bits/coord;
//   qsgd-elias at s = 255 within 10% of the empirical entropy of the levels; topk 1% >= 30x
//   smaller than fp32.
// Run: codec_bench [--benchmark_filter=qsgd]
#include <benchmark/benchmark.h>
#include <fmt/format.h>

#include <cmath>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#include "ml/model.h"
#include "ml/random.h"
#include "sync/codecs/codec.h"
#include "sync/codecs/codec_internal.h"

namespace p2p::sync::codecs {
namespace {

const std::vector<float>& Input(const std::string& kind, size_t p) {
  static std::map<std::pair<std::string, size_t>, std::vector<float>> cache;
  auto& x = cache[{kind, p}];
  if (!x.empty()) return x;
  x.resize(p);
  if (kind == "gaussian") {
    std::mt19937_64 rng(1);
    ml::FillNormal(rng, 1.0f, x);
    return x;
  }
  // mlp_grad: one minibatch gradient of the default mlp at initialisation.
  ml::ModelOptions options;
  options.name = "mlp";
  options.input = {1, 28, 28};
  auto model = ml::Model::Create(options);
  if (!model.ok()) throw std::runtime_error(model.status().ToString());
  ml::Matrix batch(64, 28 * 28);
  std::mt19937_64 rng(2);
  ml::FillNormal(rng, 1.0f, {batch.data(), size_t(batch.size())});
  std::vector<int32_t> labels(64);
  for (auto& y : labels) y = static_cast<int32_t>(rng() % 10);
  (*model)->ComputeGradient(batch, labels);
  const auto g = (*model)->Grads();
  for (size_t i = 0; i < p; ++i) x[i] = g[i % g.size()];
  return x;
}

std::shared_ptr<const Codec> CodecFor(const std::string& spec) {
  auto config = ParseCodecSpec(spec);
  if (!config.ok()) throw std::runtime_error(config.status().ToString());
  auto codec = MakeCodec(*config);
  if (!codec.ok()) throw std::runtime_error(codec.status().ToString());
  return std::shared_ptr<const Codec>(std::move(*codec));
}

// Empirical entropy (bits per value) of the signed levels qsgd / qsgd-elias send for x: levels
// are recovered from the decoded values and each bucket's step.
double LevelEntropy(const Codec& codec, std::span<const float> x, std::span<const float> decoded) {
  const double s = double((1u << int(codec.config().params.at("bits"))) - 1);
  const size_t bucket = static_cast<size_t>(codec.config().params.at("bucket"));
  const size_t b = bucket ? bucket : x.size();
  std::unordered_map<int64_t, uint64_t> counts;
  for (size_t start = 0; start < x.size(); start += b) {
    const size_t len = std::min(b, x.size() - start);
    const float norm = static_cast<float>(std::sqrt(internal::SumOfSquares(x.data() + start, len)));
    const float step = norm / static_cast<float>(s);
    for (size_t i = start; i < start + len; ++i) {
      ++counts[step > 0 ? std::llround(double(decoded[i]) / step) : 0];
    }
  }
  double h = 0;
  const double n = double(x.size());
  for (const auto& [level, c] : counts) h -= double(c) / n * std::log2(double(c) / n);
  return h;
}

void BM_Codec(benchmark::State& state, std::string spec, std::string input, bool encode) {
  const size_t p = static_cast<size_t>(state.range(0));
  const auto codec = CodecFor(spec);
  const auto& x = Input(input, p);
  std::vector<std::byte> payload;
  payload.reserve(codec->MaxPayloadBytes(p));
  if (Status s = codec->Encode(x, 1, payload); !s.ok()) {
    state.SkipWithError(s.ToString().c_str());
    return;
  }
  std::vector<float> out(p);
  uint64_t seed = 1;
  for (auto _ : state) {
    if (encode) {
      payload.clear();
      if (Status s = codec->Encode(x, ++seed, payload); !s.ok()) {
        state.SkipWithError(s.ToString().c_str());
        return;
      }
      benchmark::DoNotOptimize(payload.data());
    } else {
      if (Status s = codec->Decode(payload, out); !s.ok()) {
        state.SkipWithError(s.ToString().c_str());
        return;
      }
      benchmark::DoNotOptimize(out.data());
    }
    benchmark::ClobberMemory();
  }
  state.counters["GBps"] =
      benchmark::Counter(4.0 * double(p) / 1e9, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["bits_per_coord"] = 8.0 * double(payload.size()) / double(p);
  state.counters["x_fp32"] = 4.0 * double(p) / double(payload.size());
  if (codec->id() == "qsgd-elias") {
    if (!encode) {
      (void)codec->Decode(payload, out);
    } else if (Status s = codec->Decode(payload, out); !s.ok()) {
      state.SkipWithError(s.ToString().c_str());
      return;
    }
    const double h = LevelEntropy(*codec, x, out);
    // The coded levels alone (the stream), without the header and the bucket norms.
    const size_t bucket = static_cast<size_t>(codec->config().params.at("bucket"));
    const size_t buckets = bucket ? (p + bucket - 1) / bucket : 1;
    const double level_bits =
        double(internal::LoadU64(payload.data() + 12 + 4 * buckets)) / double(p);
    state.counters["entropy"] = h;
    state.counters["level_bits"] = level_bits;
    state.counters["x_entropy"] = level_bits / h;
  }
}

// Collects every run's counters for the targets printed at the end.
class Collector : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    for (const Run& r : runs) {
      auto& c = results[r.benchmark_name()];
      for (const auto& [name, counter] : r.counters) c[name] = counter.value;
    }
    ConsoleReporter::ReportRuns(runs);
  }
  std::map<std::string, std::map<std::string, double>> results;
};

const char* const kSpecs[] = {"none",
                              "fp16",
                              "qsgd",
                              "qsgd:bits=4,bucket=512",
                              "qsgd-elias",
                              "qsgd-elias:code=omega",
                              "qsgd-elias:bucket=512",
                              "qsgd-elias:bucket=512,order=3",
                              "qsgd-elias:bucket=256,order=3",
                              "qsgd-linf",
                              "qsgd-linf:bits=7",
                              "uint8",
                              "uint8:mode=meanstd",
                              "topk",
                              "topk:ratio=0.001"};
// Level statistics on a real gradient; the elias variants are also the entropy comparison.
const char* const kQuantisers[] = {"qsgd",
                                   "qsgd-elias",
                                   "qsgd-elias:code=omega",
                                   "qsgd-elias:bucket=512",
                                   "qsgd-elias:bucket=512,order=3",
                                   "qsgd-elias:bucket=256,order=3"};
const char* const kEntropyCases[] = {"qsgd-elias", "qsgd-elias:code=omega", "qsgd-elias:bucket=512",
                                     "qsgd-elias:bucket=512,order=3",
                                     "qsgd-elias:bucket=256,order=3"};
constexpr int64_t kSizes[] = {1'000'000, 10'000'000};

std::string Name(const std::string& op, const std::string& spec, const std::string& input) {
  return fmt::format("{}/{}/{}", op, spec, input);
}

void Register() {
  auto add = [](const std::string& spec, const std::string& input, bool only_small) {
    for (bool encode : {true, false}) {
      auto* b = benchmark::RegisterBenchmark(
          Name(encode ? "encode" : "decode", spec, input).c_str(), BM_Codec, spec, input, encode);
      b->ArgName("P")->Unit(benchmark::kMillisecond);
      for (int64_t p : kSizes) {
        if (!only_small || p == kSizes[0]) b->Arg(p);
      }
    }
  };
  for (const char* spec : kSpecs) add(spec, "gaussian", false);
  for (const char* spec : kQuantisers) add(spec, "mlp_grad", true);
}

void PrintTargets(const Collector& c) {
  auto get = [&](const std::string& op, const std::string& spec, const std::string& input,
                 int64_t p, const std::string& counter) -> double {
    const auto it = c.results.find(Name(op, spec, input) + fmt::format("/P:{}", p));
    if (it == c.results.end() || !it->second.contains(counter)) return std::nan("");
    return it->second.at(counter);
  };
  auto both = [&](const std::string& spec, int64_t p) {
    const double e = get("encode", spec, "gaussian", p, "GBps");
    const double d = get("decode", spec, "gaussian", p, "GBps");
    return 1.0 / (1.0 / e + 1.0 / d);  // bytes of input per second through encode then decode
  };
  auto line = [](const std::string& what, double value, const std::string& target, bool ok) {
    fmt::print("  {:<76} {:>9.4f}  target {:<8} {}\n", what, value, target,
               std::isnan(value) ? "not run" : (ok ? "met" : "MISSED"));
  };
  fmt::print("\nTargets (one thread):\n");
  for (int64_t p : kSizes) {
    const double q = both("qsgd", p);
    line(fmt::format("qsgd 8-bit encode+decode GB/s, P={}", p), q, ">= 1", q >= 1.0);
    const double e = both("qsgd-elias", p);
    line(fmt::format("qsgd-elias encode+decode GB/s, P={}", p), e, ">= 0.3", e >= 0.3);
  }
  const double bits = get("encode", "qsgd", "gaussian", kSizes[0], "bits_per_coord");
  // 9 bits per value plus the 16-byte header and norm spread over P (9.0001 at P = 1M).
  line("qsgd 8-bit bits per coordinate (payload incl. header)", bits, "<= 9", bits <= 9.0 + 1e-3);
  for (const char* input : {"gaussian", "mlp_grad"}) {
    for (const char* spec : kEntropyCases) {
      const double r = get("encode", spec, input, kSizes[0], "x_entropy");
      const double h = get("encode", spec, input, kSizes[0], "entropy");
      line(fmt::format("{} ({}): coded level bits / entropy {:.3f}", spec, input, h), r, "<= 1.1",
           r <= 1.1);
    }
  }
  const double x = get("encode", "topk", "gaussian", kSizes[0], "x_fp32");
  line("topk 1% size reduction vs fp32 (x)", x, ">= 30", x >= 30.0);
}

}  // namespace
}  // namespace p2p::sync::codecs

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  p2p::sync::codecs::Register();
  p2p::sync::codecs::Collector collector;
  benchmark::RunSpecifiedBenchmarks(&collector);
  p2p::sync::codecs::PrintTargets(collector);
  benchmark::Shutdown();
  return 0;
}
