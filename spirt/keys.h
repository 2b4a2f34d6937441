// The Redis keys of a SPIRT run in one peer's database (docs/spirt.md, "Key layout"). Every key
// starts with "p2p:<run id>:" so a run's keys can be found (SCAN) and deleted, and no two runs
// sharing a database collide.
#pragma once

#include <cstdint>
#include <string>

namespace p2p::spirt {

class RunKeys {
 public:
  explicit RunKeys(std::string run_id) : prefix_("p2p:" + std::move(run_id) + ":") {}
  std::string Params() const { return prefix_ + "params"; }
  std::string State() const { return prefix_ + "state"; }
  // Both as they were before the last update (kept only when rounds can be undone: --on-failure
  // continue), so a view change can roll the database back by one round.
  std::string PreviousParams() const { return prefix_ + "params:prev"; }
  std::string PreviousState() const { return prefix_ + "state:prev"; }
  // Per round `n` (counted from 0 over the whole run): the functions' gradients (a list), the
  // per-peer average `rank` announces, the copy of peer `from`'s average and the aggregate.
  std::string Grads(uint64_t n) const { return prefix_ + "grads:" + std::to_string(n); }
  std::string Average(uint64_t n, int rank) const {
    return prefix_ + "avg:" + std::to_string(n) + ":" + std::to_string(rank);
  }
  std::string Copy(uint64_t n, int from) const {
    return prefix_ + "from:" + std::to_string(n) + ":" + std::to_string(from);
  }
  std::string Aggregate(uint64_t n) const { return prefix_ + "agg:" + std::to_string(n); }
  // SCAN MATCH pattern of every key of the run.
  std::string Pattern() const;

 private:
  std::string prefix_;
};

}  // namespace p2p::spirt
