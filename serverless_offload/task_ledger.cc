#include "serverless_offload/task_ledger.h"

namespace p2p::offload {

TaskLedger::TaskLedger(size_t tasks, int retries, PoolStats& stats)
    : retries_(retries), stats_(stats), attempts_(tasks, 0), results_(tasks) {
  for (size_t i = 0; i < tasks; ++i) pending_.push_back(i);
}

size_t TaskLedger::StartNext() {
  const size_t i = pending_.front();
  pending_.pop_front();
  ++attempts_[i];
  ++stats_.invocations;
  return i;
}

Status TaskLedger::Failed(size_t task, uint64_t task_id, const std::string& why) {
  ++stats_.failures;
  if (attempts_[task] <= static_cast<uint32_t>(retries_)) {
    ++stats_.retries;
    pending_.push_back(task);
    return Status::Ok();
  }
  return Unavailable("gradient task {} failed after {} attempt(s); last: {}", task_id,
                     attempts_[task], why);
}

void TaskLedger::Succeeded(size_t task, TaskResult result) {
  if (results_[task]) return;
  results_[task] = std::move(result);
  ++done_;
}

void TaskLedger::DetachFromSlot(size_t task) {
  if (!results_[task]) return;
  TaskResult& r = *results_[task];
  if (r.shared_gradient.empty()) return;
  r.gradient.assign(r.shared_gradient.begin(), r.shared_gradient.end());
  r.shared_gradient = {};
  r.slot.reset();
}

std::vector<TaskResult> TaskLedger::TakeResults() {
  std::vector<TaskResult> out;
  out.reserve(results_.size());
  for (auto& r : results_) out.push_back(std::move(*r));
  return out;
}

}  // namespace p2p::offload
