// DbHeartbeat: SPIRT's heartbeat on the databases (docs/spirt.md). A thread PINGs every other
// member's Redis database every `interval`; a database that cannot be reached (connection
// refused or lost, AUTH refused, no PONG within `timeout`) makes its peer suspected through
// Mailbox::Suspect — the path a member that stopped sending heartbeats takes — and is logged once
// naming the peer and the database, until it answers again.
//
// The members come from the training thread (SetMembers, each round), not from the mailbox's
// view, which that thread changes. Thread-safety: owns its thread and its own connections (a
// RedisClient is not shared between threads).
#pragma once

#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "store/client.h"
#include "sync/mailbox.h"

namespace p2p::spirt {

class DbHeartbeat {
 public:
  // Starts PINGing at once. `databases[r]` is rank r's; this peer's own (`self`) is not PINGed.
  // `mailbox` must outlive this object.
  DbHeartbeat(sync::Mailbox& mailbox, std::vector<store::ConnectOptions> databases, int self,
              std::vector<int> members, std::chrono::milliseconds interval,
              std::chrono::milliseconds timeout);
  // Stops the thread (waits for a PING in progress, at most `timeout`).
  ~DbHeartbeat();
  DbHeartbeat(const DbHeartbeat&) = delete;
  DbHeartbeat& operator=(const DbHeartbeat&) = delete;

  // The members of the current view (a rank that left is no longer PINGed).
  void SetMembers(std::vector<int> members);
  // Blocks until `rank`'s database was found unreachable, or `deadline`; returns the failure
  // (naming the database), or nullopt at the deadline. For tests and diagnostics.
  std::optional<std::string> WaitUnreachable(int rank,
                                             std::chrono::steady_clock::time_point deadline);
  uint64_t pings() const;

 private:
  void Run();
  // PINGs rank `r`'s database (connecting first if needed); the failure, or empty.
  std::string PingOne(int r);

  sync::Mailbox& mailbox_;
  std::vector<store::ConnectOptions> databases_;
  const int self_;
  const std::chrono::milliseconds interval_;
  std::vector<std::unique_ptr<store::RedisClient>> clients_;  // the thread's own, by rank
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::vector<int> members_;
  std::map<int, std::string> unreachable_;  // rank -> why, while it does not answer
  uint64_t pings_ = 0;
  std::thread thread_;
};

}  // namespace p2p::spirt
