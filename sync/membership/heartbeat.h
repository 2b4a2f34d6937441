// Heartbeat: a thread that sends a HEARTBEAT envelope to every other member of the current view
// every `interval`, for as long as it lives — also while the training thread computes a long
// minibatch or waits for an offload, so a busy peer is never mistaken for a dead one.
//
// HEARTBEATs are signed like every envelope; receivers count them as signs of life
// (Mailbox::Suspects) and park nothing. A send that fails is logged once and does not stop the
// thread: the receiving side's failure detector decides what a silence means.
//
// Thread-safety: owns its thread; the Mailbox's sends are serialised (sync/mailbox.h).
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "sync/mailbox.h"

namespace p2p::sync::membership {

class Heartbeat {
 public:
  // Starts sending at once. `mailbox` must outlive this object.
  Heartbeat(Mailbox& mailbox, std::chrono::milliseconds interval);
  // Stops the thread (waits for a send in progress).
  ~Heartbeat();
  Heartbeat(const Heartbeat&) = delete;
  Heartbeat& operator=(const Heartbeat&) = delete;

  uint64_t sent() const;

 private:
  void Run();

  Mailbox& mailbox_;
  const std::chrono::milliseconds interval_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  uint64_t sent_ = 0;
  std::thread thread_;
};

}  // namespace p2p::sync::membership
