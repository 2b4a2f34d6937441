// The comparative study's other systems as strategies (docs/strategies.md): LambdaML's AllReduce
// (`allreduce-master`) and ScatterReduce (`scatter-reduce`, an alias of reduce-scatter-average),
// SMLT's shard aggregators (`hierarchical:shards=M`) and FasDL's K-Reduce (`k-reduce:k=K`).
// MakeStrategy (sync/strategy.h) hands these names here, so its own list stays short.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "sync/rules/rule.h"
#include "sync/strategy.h"

namespace p2p::sync {

// nullopt when `name` is none of these strategies; otherwise the strategy, or InvalidArgument for
// a bad parameter, a codec or `rule` the strategy cannot use, or more aggregators than peers.
std::optional<Result<std::unique_ptr<Strategy>>> MakeComparativeStrategy(
    const std::string& name, Mailbox& mailbox, const StrategyOptions& options,
    const rules::Rule& rule);
// Their names for help texts and errors ("hierarchical:shards=M" for the parametrised ones).
std::vector<std::string> ComparativeStrategyNames();
// Whether `name` is a valid --strategy: one of StrategyNames() or a parametrised name with a
// valid count (checked against the run's size later). InvalidArgument naming the valid ones.
Status CheckStrategyName(const std::string& name);

}  // namespace p2p::sync
