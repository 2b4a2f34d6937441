// `p2ptrain function --serve --broker URL`: a long-lived worker for the amqp backend
// (amqp_pool.h) on any host. It consumes the shared work queue with prefetch 1, so workers
// compete for tasks and each holds at most one; it publishes the result to the task's pool and
// only then acks the task, so a worker that dies mid-task has its task redelivered by the broker
// to another worker. Parameters come from the pool on first use of a version and are cached
// (per pool, the 8 most recently used pools).
#pragma once

#include <cstdint>
#include <string>

#include "common/status.h"
#include "serverless_offload/remote_wire.h"

namespace p2p::offload {

struct WorkerOptions {
  std::string broker;  // amqp[s]://user:pass@host:port/vhost
  std::string queue = kDefaultWorkQueue;
  int memory_mb = 0;             // address-space limit for this worker (RLIMIT_AS); 0 = none
  uint64_t max_tasks = 0;        // exit after this many tasks; 0 = until SIGINT/SIGTERM
  double params_timeout_s = 30;  // how long to wait for a pool's parameter reply
  // Without the broker (not reachable at start, or lost), retry with backoff for this long
  // before giving up; a task in hand when the link dropped is redelivered by the broker.
  double reconnect_timeout_s = 300;
};

// Serves tasks until SIGINT/SIGTERM (the task in hand is finished first) or max_tasks. A task
// that cannot be computed gets a result with its error; a malformed message is logged, acked and
// dropped. A broker that cannot be reached or is lost is retried (backoff 0.5 s doubling to 10 s)
// for reconnect_timeout_s; then, or for errors that cannot heal (credentials), the error.
Status ServeAmqpWorker(const WorkerOptions& options);

}  // namespace p2p::offload
