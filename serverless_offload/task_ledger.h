// The bookkeeping of one FunctionPool::RunAll, whatever the backend: which tasks wait to be
// (re)started, how often each was tried, and the results so far. Every task ends with exactly one
// result or the call fails: a missing result is retried, never skipped.
#pragma once

#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "serverless_offload/pool.h"

namespace p2p::offload {

class TaskLedger {
 public:
  TaskLedger(size_t tasks, int retries, PoolStats& stats);

  bool done() const { return done_ == results_.size(); }
  bool has_pending() const { return !pending_.empty(); }
  // The next task to start; counts the attempt. Its attempt number (0-based) is attempts(i) - 1.
  size_t StartNext();
  uint32_t attempts(size_t task) const { return attempts_[task]; }
  bool finished(size_t task) const { return results_[task].has_value(); }

  // A failed attempt of `task` (`task_id` for the message): queued again while retries last,
  // else the error that ends RunAll, naming the task, its attempts and `why`.
  Status Failed(size_t task, uint64_t task_id, const std::string& why);
  void Succeeded(size_t task, TaskResult result);
  // Copies a finished result's gradient out of the shared slot it views (TaskResult::slot), so
  // the slot can take the next task of the same process.
  void DetachFromSlot(size_t task);
  // The results in task order; only once done().
  std::vector<TaskResult> TakeResults();

 private:
  int retries_;
  PoolStats& stats_;
  std::deque<size_t> pending_;
  std::vector<uint32_t> attempts_;
  std::vector<std::optional<TaskResult>> results_;
  size_t done_ = 0;
};

}  // namespace p2p::offload
