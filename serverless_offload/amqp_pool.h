// The `amqp` backend: tasks go onto a RabbitMQ work queue that `p2ptrain function --serve`
// workers on any host consume (competing consumers, prefetch 1, ack after the result is
// published), which is how offload grows past one machine.
//
// On the broker (default exchange, so routing key = queue name):
//   <queue>                   the shared work queue (--fn-queue, default p2ptrain.functions)
//   p2ptrain.fnpool.<...>     this pool's private queue: results and parameter requests
//   p2ptrain.fnworker.<...>   each worker's private queue: parameter replies
// A task carries its samples and the pool's queue (reply_to), not the parameters: a worker asks
// the pool for a parameter version the first time it sees it and caches it, so parameters cross
// the network once per version and worker. Each task message expires after --fn-timeout, and an
// attempt without a result by then is retried (a new message); a worker that dies holding a task
// loses its connection, and the broker redelivers the task to another worker.
//
// Threading: the pool's connection is used only inside RunAll, which is not reentrant. It runs
// without AMQP heartbeats, because the pool sits idle while its peer syncs; a dead link shows up
// as a socket error or as tasks that time out.
#pragma once

#include <memory>

#include "serverless_offload/pool.h"

namespace p2p::offload {

// Connects, declares the work queue and this pool's reply queue; Unavailable naming the broker
// if it cannot be reached within 10 s.
Result<std::unique_ptr<FunctionPool>> MakeAmqpPool(const PoolOptions& options);

}  // namespace p2p::offload
