#include "sync/membership/heartbeat.h"

#include <spdlog/spdlog.h>

namespace p2p::sync::membership {

Heartbeat::Heartbeat(Mailbox& mailbox, std::chrono::milliseconds interval)
    : mailbox_(mailbox), interval_(interval), thread_([this] { Run(); }) {}

Heartbeat::~Heartbeat() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

uint64_t Heartbeat::sent() const {
  std::lock_guard lock(mu_);
  return sent_;
}

void Heartbeat::Run() {
  bool warned = false;
  std::unique_lock lock(mu_);
  while (!stop_) {
    lock.unlock();
    broker::Envelope env;
    env.type = broker::MessageType::kHeartbeat;
    Status s = mailbox_.Send(std::move(env));
    if (!s.ok() && !warned) {
      spdlog::warn("heartbeat not sent: {}; the other peers may suspect this one", s.ToString());
      warned = true;
    }
    lock.lock();
    if (s.ok()) ++sent_;
    // A timer, not a wait for another peer: wakes early only to stop.
    cv_.wait_for(lock, interval_, [this] { return stop_; });
  }
}

}  // namespace p2p::sync::membership
