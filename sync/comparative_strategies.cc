#include "sync/comparative_strategies.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>

#include "sync/allreduce_master.h"
#include "sync/mlless.h"
#include "sync/reduce_scatter_average.h"
#include "sync/sharded_reduce.h"

namespace p2p::sync {
namespace {

// Sharded strategies move raw float32 shards with a coordinatewise rule, like
// reduce-scatter-average.
Status CheckShardable(const std::string& name, const StrategyOptions& options,
                      const rules::Rule& rule) {
  P2P_ASSIGN_OR_RETURN(codecs::CodecConfig codec, codecs::CanonicalCodecConfig(options.codec));
  if (codec.id != "none") {
    return InvalidArgument(
        "--strategy {} sends raw float32 shards; it cannot use --compression {} (use "
        "allreduce-master or allgather-average with a codec)",
        name, codecs::FormatCodecSpec(codec));
  }
  if (!rule.coordinatewise()) {
    return InvalidArgument(
        "--strategy {} combines gradients shard by shard; the rule '{}' compares whole "
        "gradients (use allreduce-master or allgather-average)",
        name, rule.name());
  }
  return Status::Ok();
}

Result<std::unique_ptr<Strategy>> MakeSharded(const std::string& name, int shards, Mailbox& mailbox,
                                              const StrategyOptions& options,
                                              const rules::Rule& rule) {
  if (shards > mailbox.size()) {
    return InvalidArgument("--strategy {} asks for {} aggregators but the run has {} peers", name,
                           shards, mailbox.size());
  }
  P2P_RETURN_IF_ERROR(CheckShardable(name, options, rule));
  return std::unique_ptr<Strategy>(std::make_unique<ShardedReduce>(mailbox, options, shards, name));
}

// mlless sends sparse raw values (its own body) and sums them: no codec, and only the mean.
Result<std::unique_ptr<Strategy>> MakeMlless(Mailbox& mailbox, const StrategyOptions& options,
                                             const rules::Rule& rule) {
  P2P_RETURN_IF_ERROR(CheckMlless(options.significance, options.codec, rule.name()));
  return std::unique_ptr<Strategy>(std::make_unique<Mlless>(mailbox, options));
}

}  // namespace

std::optional<Result<std::unique_ptr<Strategy>>> MakeComparativeStrategy(
    const std::string& name, Mailbox& mailbox, const StrategyOptions& options,
    const rules::Rule& rule) {
  using Made = Result<std::unique_ptr<Strategy>>;
  if (name == "allreduce-master") {
    auto codec = codecs::CanonicalCodecConfig(options.codec);
    if (!codec.ok()) return Made(codec.status());
    StrategyOptions canonical = options;
    canonical.codec = std::move(*codec);
    return Made(std::unique_ptr<Strategy>(std::make_unique<AllreduceMaster>(mailbox, canonical)));
  }
  if (name == "mlless") return MakeMlless(mailbox, options, rule);
  if (name == "scatter-reduce") {  // LambdaML's name for reduce-scatter-average's pattern
    if (Status s = CheckShardable(name, options, rule); !s.ok()) return Made(s);
    return Made(
        std::unique_ptr<Strategy>(std::make_unique<ReduceScatterAverage>(mailbox, options)));
  }
  auto shards = ParseShardedStrategy(name);
  if (!shards.ok()) return Made(shards.status());
  if (!shards->has_value()) return std::nullopt;
  return MakeSharded(name, **shards, mailbox, options, rule);
}

std::vector<std::string> ComparativeStrategyNames() {
  return {"allreduce-master", "scatter-reduce", "hierarchical:shards=M", "k-reduce:k=K", "mlless"};
}

Status CheckStrategyName(const std::string& name) {
  const std::vector<std::string> names = StrategyNames();
  if (std::find(names.begin(), names.end(), name) != names.end() &&
      name.find('=') == std::string::npos) {
    return Status::Ok();
  }
  P2P_ASSIGN_OR_RETURN(const std::optional<int> shards, ParseShardedStrategy(name));
  if (shards.has_value()) return Status::Ok();
  return InvalidArgument("unknown sync strategy '{}'; valid: {}", name, fmt::join(names, ", "));
}

}  // namespace p2p::sync
