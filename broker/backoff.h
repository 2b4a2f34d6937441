// The one retry policy of everything that talks to RabbitMQ (the transport's first connect and
// its reconnects, the offload worker's reconnects): which failures are worth another attempt
// (IsRetryable) and how long to wait before it (Backoff).
//
// Why one: three loops had three sets of constants (100 ms..2 s, 100 ms..5 s with jitter,
// 500 ms..10 s), so the same outage was retried differently depending on who noticed it.
// Exponential, capped, with jitter so that the peers of a run that lost the broker together do
// not all come back in the same millisecond. Waiting itself stays with the caller, which knows
// what may interrupt it (a stop request, a deadline).
#pragma once

#include <chrono>
#include <cstdint>
#include <random>

#include "common/status.h"

namespace p2p::broker {

// Whether another attempt can cure the failure: kUnavailable (network, broker down or
// restarting), kTimeout, kNotFound (an exchange auto-deleted between declare and bind), as
// opposed to permanent ones (bad credentials, unknown vhost, a queue declared with other
// arguments, TLS verification). broker/amqp_error.h maps rabbitmq-c's errors onto these codes.
bool IsRetryable(const Status& status);

struct BackoffPolicy {
  std::chrono::milliseconds first{100};
  std::chrono::milliseconds max{5000};
};

class Backoff {
 public:
  explicit Backoff(BackoffPolicy policy = {});

  // The wait before the next attempt: uniform in [d/2, d] for the current step d, which then
  // doubles up to policy.max.
  std::chrono::milliseconds Next();
  // After a success: the next failure starts again at policy.first.
  void Reset();

 private:
  BackoffPolicy policy_;
  std::chrono::milliseconds step_;
  std::minstd_rand rng_;
};

}  // namespace p2p::broker
