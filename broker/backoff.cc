#include "broker/backoff.h"

#include <algorithm>

namespace p2p::broker {

bool IsRetryable(const Status& status) {
  switch (status.code()) {
    case StatusCode::kUnavailable:
    case StatusCode::kTimeout:
    case StatusCode::kNotFound:
      return true;
    default:
      return false;
  }
}

Backoff::Backoff(BackoffPolicy policy)
    : policy_(policy), step_(policy.first), rng_(std::random_device{}()) {
  P2P_CHECK(policy_.first.count() > 0 && policy_.max >= policy_.first, "bad backoff policy");
}

std::chrono::milliseconds Backoff::Next() {
  const auto d = step_;
  step_ = std::min(step_ * 2, policy_.max);
  const auto half = d.count() / 2;
  return std::chrono::milliseconds(d.count() - half +
                                   static_cast<int64_t>(rng_() % static_cast<uint64_t>(half + 1)));
}

void Backoff::Reset() { step_ = policy_.first; }

}  // namespace p2p::broker
