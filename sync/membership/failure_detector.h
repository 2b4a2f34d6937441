// FailureDetector: which members of the current view have been silent too long.
//
// Fed with "heard from rank r at time t" (any authenticated message, heartbeats included) and with
// the transports' own signals ("rank r is gone": a ZeroMQ disconnect, an AMQP queue deleted), it
// suspects a rank after `timeout` of silence or at once when gone. Time is always passed in, so
// tests script it and nothing here sleeps or reads a clock.
//
// Thread-safety: none; the owner serialises calls.
#pragma once

#include <chrono>
#include <map>
#include <optional>
#include <vector>

namespace p2p::sync::membership {

class FailureDetector {
 public:
  using Clock = std::chrono::steady_clock;

  // Watches `members` (except `self`), each as if heard at `now`.
  FailureDetector(int self, const std::vector<int>& members, Clock::duration timeout,
                  Clock::time_point now);

  // A message from `rank` arrived at `now`; ignored for ranks not watched and for gone ranks
  // (a gone rank stays suspected until the next view).
  void Heard(int rank, Clock::time_point now);
  // The transport reports `rank` unreachable: suspected from now on.
  void Gone(int rank);
  // Whether the transport reported `rank` unreachable (Gone) since it was last watched.
  bool IsGone(int rank) const;
  // Watched ranks silent for longer than the timeout, or gone; ascending.
  std::vector<int> Suspects(Clock::time_point now) const;
  // The earliest moment a rank not yet suspected becomes suspect (a receive deadline); nullopt
  // when every watched rank is already suspected or none is watched.
  std::optional<Clock::time_point> NextSuspicion(Clock::time_point now) const;
  // After a view change: watch exactly `members` (except self), each heard at `now`.
  void Watch(const std::vector<int>& members, Clock::time_point now);

  Clock::duration timeout() const { return timeout_; }

 private:
  struct Entry {
    Clock::time_point last_heard;
    bool gone = false;
  };
  int self_;
  Clock::duration timeout_;
  std::map<int, Entry> watched_;
};

}  // namespace p2p::sync::membership
