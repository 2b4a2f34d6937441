// P2P.AVG and P2P.LAVG: sync/rules' sample-weighted mean (MeanAccumulator, compiled into the
// module from sync/rules/mean.cc), so the result is bitwise what the peers compute in process.
#include <strings.h>

#include <algorithm>
#include <charconv>
#include <span>
#include <vector>

#include "redis_module/blob_access.h"
#include "redis_module/command_util.h"
#include "redis_module/commands.h"
#include "sync/rules/mean.h"

namespace p2p::redis_module {
namespace {

// Elements summed at a time: the output chunk (64 KiB) stays in cache while every input adds to
// it, so memory traffic is one read per input plus one write. The mean is elementwise, so the
// chunking never changes a bit.
constexpr size_t kChunk = 16384;

// A sample count per input: WEIGHTS w ... (integers >= 0) or 1 each.
Result<std::vector<uint64_t>> ParseWeights(RedisModuleString** argv, int first, int end,
                                           size_t inputs, std::string_view cmd) {
  if (first < 0) return std::vector<uint64_t>(inputs, 1);
  const auto n = static_cast<size_t>(end - first);
  if (n != inputs) {
    return InvalidArgument("{}: {} inputs but {} WEIGHTS", cmd, inputs, n);
  }
  std::vector<uint64_t> weights;
  for (int i = first; i < end; ++i) {
    const std::string_view text = ArgText(argv[i]);
    uint64_t w = 0;
    const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), w);
    if (text.empty() || ec != std::errc() || ptr != text.data() + text.size() || w > (1ull << 40)) {
      return InvalidArgument("{}: weight '{}' is not a sample count (an integer in [0, 2^40])", cmd,
                             text);
    }
    weights.push_back(w);
  }
  return weights;
}

// Index of the WEIGHTS keyword in argv[from, argc), or -1.
int FindWeights(RedisModuleString** argv, int from, int argc) {
  for (int i = from; i < argc; ++i) {
    const std::string_view a = ArgText(argv[i]);
    if (a.size() == 7 && strncasecmp(a.data(), "WEIGHTS", 7) == 0) return i;
  }
  return -1;
}

Status CheckCounts(std::span<const FloatsIn> inputs, std::span<const std::string> names,
                   std::string_view cmd) {
  for (size_t i = 1; i < inputs.size(); ++i) {
    if (inputs[i].count != inputs[0].count) {
      return InvalidArgument("{}: {} holds {} floats but {} holds {}", cmd, names[i],
                             inputs[i].count, names[0], inputs[0].count);
    }
  }
  return Status::Ok();
}

// out = sum_i MeanWeight(w_i, total) * in_i, chunk by chunk; InvalidArgument at the first chunk
// whose result is not finite (out is then partly written).
Status Mean(std::span<const FloatsIn> inputs, std::span<const uint64_t> weights, float* out,
            size_t n, std::string_view cmd) {
  uint64_t total = 0;
  for (uint64_t w : weights) total += w;
  if (total == 0) return InvalidArgument("{}: every weight is 0, the mean is undefined", cmd);
  for (size_t begin = 0; begin < n; begin += kChunk) {
    const size_t len = std::min(kChunk, n - begin);
    sync::rules::MeanAccumulator mean(std::span<float>(out + begin, len), total);
    for (size_t i = 0; i < inputs.size(); ++i) {
      mean.Add(std::span<const float>(inputs[i].data + begin, len), weights[i]);
    }
    if (const int64_t bad = FirstNonFinite(out + begin, len); bad >= 0) {
      return InvalidArgument(
          "{}: the mean is not finite at index {} (an input holds NaN or infinity there)", cmd,
          begin + static_cast<size_t>(bad));
    }
  }
  return Status::Ok();
}

// Writes the mean of `inputs` to the key argv[1]. When dst is also an input the mean is built
// aside first (writing dst in place would change an input under the sum).
Result<long long> StoreMean(RedisModuleCtx* ctx, RedisModuleString* dst_name,
                            std::span<const FloatsIn> inputs, std::span<const uint64_t> weights,
                            bool dst_is_input, std::string_view cmd) {
  const uint32_t n = inputs[0].count;
  if (dst_is_input) {
    std::vector<float> mean(n);
    Status s = Mean(inputs, weights, mean.data(), n, cmd);
    if (!s.ok()) return Status(s.code(), s.message() + "; nothing stored");
    Key dst(ctx, dst_name, kRead | kWrite);
    P2P_ASSIGN_OR_RETURN(FloatsOut out, FloatsOut::Open(dst, n, /*keep=*/false, "destination"));
    std::copy(mean.begin(), mean.end(), out.data());
    out.Commit();
    return n;
  }
  Key dst(ctx, dst_name, kRead | kWrite);
  P2P_ASSIGN_OR_RETURN(FloatsOut out, FloatsOut::Open(dst, n, /*keep=*/false, "destination"));
  Status s = Mean(inputs, weights, out.data(), n, cmd);
  if (!s.ok()) {
    rm.DeleteKey(dst.get());  // a partial mean must not stay behind
    return Status(s.code(), s.message() + "; the destination was deleted");
  }
  out.Commit();
  return n;
}

// ListGet hands out a copy of each element (a list keeps its elements packed, there is no
// zero-copy access). Holding all K copies at once made the kernel fault in K fresh multi-megabyte
// allocations per call (90 ms for K = 4 x 1M floats on the test VM); taking one element at a time
// and freeing it before the next lets the allocator reuse the same pages. The mean is built
// input by input (MeanAccumulator), so the bits are those of the one-pass mean.
Result<long long> StreamMean(RedisModuleCtx* ctx, RedisModuleString* dst_name, const Key& list,
                             std::span<const uint64_t> weights, std::string_view cmd) {
  uint64_t total = 0;
  for (uint64_t w : weights) total += w;
  if (total == 0) return InvalidArgument("{}: every weight is 0, the mean is undefined", cmd);
  struct Element {
    RedisModuleCtx* ctx;
    RedisModuleString* s;
    ~Element() {
      if (s != nullptr) rm.FreeString(ctx, s);
    }
  };
  auto read = [&](size_t i, Element& e) -> Result<FloatsIn> {
    e.s = rm.ListGet(list.get(), static_cast<long>(i));
    if (e.s == nullptr) return Internal("{}: cannot read element {} of '{}'", cmd, i, list.name());
    return ReadBlobString(e.s, fmt::format("{}: element {} of '{}'", cmd, i, list.name()));
  };
  Element first{ctx, nullptr};
  P2P_ASSIGN_OR_RETURN(FloatsIn in0, read(0, first));
  const uint32_t n = in0.count;
  Key dst(ctx, dst_name, kRead | kWrite);
  P2P_ASSIGN_OR_RETURN(FloatsOut out, FloatsOut::Open(dst, n, /*keep=*/false, "destination"));
  sync::rules::MeanAccumulator mean(std::span<float>(out.data(), n), total);
  mean.Add(std::span<const float>(in0.data, n), weights[0]);
  rm.FreeString(ctx, first.s);  // before the next copy, so the allocator can reuse its pages
  first.s = nullptr;
  auto fail = [&](const Status& s) {
    rm.DeleteKey(dst.get());  // a partial mean must not stay behind
    return Status(s.code(), s.message() + "; the destination was deleted");
  };
  for (size_t i = 1; i < weights.size(); ++i) {
    Element e{ctx, nullptr};
    Result<FloatsIn> in = read(i, e);
    if (!in.ok()) return fail(in.status());
    if (in->count != n) {
      return fail(InvalidArgument("{}: element {} of '{}' holds {} floats but element 0 holds {}",
                                  cmd, i, list.name(), in->count, n));
    }
    mean.Add(std::span<const float>(in->data, n), weights[i]);
  }
  if (const int64_t bad = FirstNonFinite(out.data(), n); bad >= 0) {
    return fail(InvalidArgument(
        "{}: the mean is not finite at index {} (an input holds NaN or infinity there)", cmd, bad));
  }
  out.Commit();
  return n;
}

Result<long long> Avg(RedisModuleCtx* ctx, RedisModuleString** argv, int argc) {
  constexpr std::string_view cmd = "P2P.AVG";
  const int weights_at = FindWeights(argv, 2, argc);
  const int sources_end = weights_at < 0 ? argc : weights_at;
  if (sources_end <= 2) return InvalidArgument("{}: no source key before WEIGHTS", cmd);
  const auto count = static_cast<size_t>(sources_end - 2);
  P2P_ASSIGN_OR_RETURN(std::vector<uint64_t> weights,
                       ParseWeights(argv, weights_at < 0 ? -1 : weights_at + 1, argc, count, cmd));
  std::vector<std::unique_ptr<Key>> keys;
  std::vector<FloatsIn> inputs;
  std::vector<std::string> names;
  bool dst_is_input = false;
  for (int i = 2; i < sources_end; ++i) {
    keys.push_back(std::make_unique<Key>(ctx, argv[i], kRead));
    P2P_ASSIGN_OR_RETURN(FloatsIn in, ReadBlob(*keys.back(), fmt::format("{}: source", cmd)));
    inputs.push_back(std::move(in));
    names.push_back(fmt::format("'{}'", ArgText(argv[i])));
    dst_is_input = dst_is_input || ArgText(argv[i]) == ArgText(argv[1]);
  }
  P2P_RETURN_IF_ERROR(CheckCounts(inputs, names, cmd));
  return StoreMean(ctx, argv[1], inputs, weights, dst_is_input, cmd);
}

Result<long long> Lavg(RedisModuleCtx* ctx, RedisModuleString** argv, int argc) {
  constexpr std::string_view cmd = "P2P.LAVG";
  if (argc != 3 && (argc < 5 || FindWeights(argv, 3, 4) != 3)) {
    return InvalidArgument("{}: usage P2P.LAVG dst listkey [WEIGHTS w ...]", cmd);
  }
  Key list(ctx, argv[2], kRead);
  const int type = list.type();
  if (type == kKeyTypeEmpty) return NotFound("{}: list '{}' does not exist", cmd, list.name());
  if (type != kKeyTypeList) return InvalidArgument("{}: '{}' is not a list", cmd, list.name());
  const size_t len = rm.ValueLength(list.get());
  P2P_ASSIGN_OR_RETURN(std::vector<uint64_t> weights,
                       ParseWeights(argv, argc == 3 ? -1 : 4, argc, len, cmd));
  if (len == 0) return InvalidArgument("{}: list '{}' is empty", cmd, list.name());
  return StreamMean(ctx, argv[1], list, weights, cmd);
}

}  // namespace

int AvgCommand(RedisModuleCtx* ctx, RedisModuleString** argv, int argc) {
  if (argc < 3) return rm.WrongArity(ctx);
  return Reply(ctx, [&] { return Avg(ctx, argv, argc); });
}

int LavgCommand(RedisModuleCtx* ctx, RedisModuleString** argv, int argc) {
  if (argc < 3) return rm.WrongArity(ctx);
  return Reply(ctx, [&] { return Lavg(ctx, argv, argc); });
}

}  // namespace p2p::redis_module
