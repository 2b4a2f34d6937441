// FunctionPool: runs gradient tasks on short-lived function processes, like a peer fanning its
// minibatches out to AWS Lambda — with Lambda's knobs (concurrency, memory, timeout, retries) and
// its accounting (billed duration, GB-seconds, requests).
#pragma once

#include <chrono>
#include <cstdint>
#include <future>
#include <string>
#include <vector>

#include "common/status.h"
#include "serverless_offload/remote_wire.h"
#include "serverless_offload/task.h"
#include "sync/rules/mean.h"

namespace p2p::offload {

struct PoolOptions {
  std::string backend = "process";   // process | amqp (remote workers, see docs/offload.md)
  int functions = 2;                 // concurrent invocations (Lambda's concurrency)
  int memory_mb = 1024;              // per function; enforced as RLIMIT_AS (address space)
  double timeout_s = 60;             // per invocation, then the function is killed
  int retries = 2;                   // extra attempts of a failed invocation
  bool warm = false;                 // keep finished processes for reuse (warm containers)
  std::vector<std::string> command;  // the function's argv (default: this executable `function`)
  // amqp backend: the RabbitMQ that `p2ptrain function --serve` workers consume from, and the
  // work queue they share.
  std::string broker;
  std::string queue = kDefaultWorkQueue;
};

// Counters since the pool started; take differences for per-epoch numbers.
struct PoolStats {
  uint64_t invocations = 0;  // attempts started (requests billed)
  uint64_t cold_starts = 0;  // attempts that started a new process
  uint64_t warm_starts = 0;  // attempts served by a kept process
  uint64_t retries = 0;
  uint64_t failures = 0;             // attempts that crashed, timed out or returned an error
  uint64_t redeliveries = 0;         // amqp: results of tasks the broker gave a second worker
  uint64_t params_sent = 0;          // amqp: parameter versions sent to workers (once per worker)
  double billed_ms = 0;              // sum of per-invocation durations rounded up to 1 ms
  double gb_seconds = 0;             // billed duration x configured memory
  std::vector<double> latencies_ms;  // per successful invocation, submit to result
};

class FunctionPool {
 public:
  virtual ~FunctionPool() = default;
  // Runs every task (at most `functions` at a time), retrying failed attempts. Results are in
  // task order. An error names the task, its attempts and the last failure; then no result is
  // returned at all (a step never applies a partial average).
  virtual Result<std::vector<TaskResult>> RunAll(std::vector<Task> tasks) = 0;
  // Runs `tasks` in the background; the future yields what RunAll would.
  std::future<Result<std::vector<TaskResult>>> Submit(std::vector<Task> tasks);
  virtual const PoolStats& stats() const = 0;
};

// The sample-weighted mean of `results` into `grad`, summed in task order (the same bits whatever
// order the functions finished in); returns the summed loss. DataLoss if a result's size or
// sample count is not what its task asked for (`expected_samples[i]`).
Result<double> WeightedMean(const std::vector<TaskResult>& results,
                            const std::vector<uint64_t>& expected_samples, std::span<float> grad);

// The same mean built result by result, so a caller can run its tasks in batches and drop each
// batch's results: the same weights (samples / total) and order give the same bits as
// WeightedMean over all of them at once. The arithmetic is the peers' sample-weighted mean
// (sync/rules/mean.h), shared, not copied.
class WeightedSum {
 public:
  // Zeroes `grad`; `total_samples` is the sum over every result that will be added (> 0).
  WeightedSum(std::span<float> grad, uint64_t total_samples);
  // Adds the next result in task order; DataLoss as WeightedMean.
  Status Add(const TaskResult& result, uint64_t expected_samples);
  double loss_sum() const { return loss_sum_; }

 private:
  sync::rules::MeanAccumulator mean_;
  size_t size_;
  uint64_t total_;
  double loss_sum_ = 0;
};

// Validates the options (InvalidArgument naming the flag) and creates the backend.
Result<std::unique_ptr<FunctionPool>> MakeFunctionPool(const PoolOptions& options);

}  // namespace p2p::offload
