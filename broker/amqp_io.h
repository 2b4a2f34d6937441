// The AMQP transport's I/O thread and the state it shares with the caller's thread.
//
// rabbitmq-c connections are not thread-safe and do no background work: heartbeats are only
// sent and checked while a thread is inside the library. So one I/O thread owns the Session for
// the transport's whole life; it publishes what Send/Broadcast hand it, tracks publisher
// confirms, reads deliveries, reassembles and acks them, answers hellos, services heartbeats
// while the caller computes for minutes, and reconnects with backoff when the link drops.
// The caller's thread only touches `Shared` (under its mutex) and waits on its condition
// variable with a deadline, so no public call can hang on the network. A failure of the I/O
// thread is stored in Shared::failure and returned by the next call (STYLE habit 5).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "broker/amqp_session.h"
#include "broker/chunking.h"
#include "broker/transport.h"
#include "common/status.h"

namespace p2p::broker::amqp {

// An eventfd that wakes the I/O thread out of poll(2) when work is submitted. Move-only owner.
class WakeFd {
 public:
  WakeFd();
  ~WakeFd();
  WakeFd(const WakeFd&) = delete;
  WakeFd& operator=(const WakeFd&) = delete;
  void Notify();  // thread-safe
  void Drain();
  int fd() const { return fd_; }

 private:
  int fd_ = -1;
};

struct Outgoing {  // one AMQP body to publish
  std::string routing_key;
  Bytes body;
  bool counted = true;  // part of Shared::pending_* (false: the I/O thread's own hello replies)
};

struct AtomicStats {
  std::atomic<uint64_t> bytes_sent{0}, bytes_received{0}, messages_sent{0}, messages_received{0},
      rejected{0}, reconnects{0};
  std::atomic<uint64_t> incomplete_bytes{0};  // held by the reassembler for incomplete messages
  TransportStats Snapshot() const;
};

// Routing keys on the run's direct exchange; see amqp_transport.h for the layout.
std::string DirectKey(int rank);     // "rank.<r>": point-to-point to r
std::string BroadcastKey(int from);  // "bcast.<s>": broadcast from s, bound by every queue but s's
// The body of a hello or hello reply: a chunk header with no payload.
Bytes HelloBody(FrameKind kind, int rank, uint64_t incarnation);

struct IoConfig {
  SessionConfig session;
  Topology topology;  // purge=false: the I/O thread only reconnects
  int rank = 0;
  int size = 1;
  uint64_t incarnation = 0;
  ReassemblyLimits reassembly;  // max_message_bytes also bounds DecodeChunk
  std::chrono::milliseconds reconnect_timeout{60'000};
};

// Shared between the caller's thread and the I/O thread. Every field but `stats` and `wake` is
// guarded by `mu`; every change is announced on `cv`.
struct Shared {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<Outgoing> submitted;  // caller -> I/O thread
  uint64_t pending_bytes = 0;      // counted bodies submitted but not yet confirmed by the broker
  uint64_t pending_chunks = 0;
  std::deque<Message> inbox;         // I/O thread -> caller, whole messages
  std::vector<uint64_t> hello_from;  // per rank: incarnation heard in a hello, 0 = none yet
  Status failure;                    // set when the I/O thread died; it has then exited
  bool stop = false;                 // caller: flush until stop_deadline, delete queue, exit
  Deadline stop_deadline;
  Status goodbye;  // I/O thread: result of that, valid once `exited`
  bool exited = false;
  int socket_fd = -1;  // the live socket, for Close's last-resort shutdown(2)
  AtomicStats stats;
  WakeFd wake;
};

class IoThread {
 public:
  IoThread(const IoConfig& config, Shared& shared, Session session);
  // The thread body. Returns after a stop request (goodbye done) or a fatal error (stored in
  // shared.failure); either way shared.exited is set.
  void Run();

 private:
  struct InFlight {
    Outgoing out;
    uint64_t tag = 0;  // publish sequence number on the current channel; 0 = not yet published
    bool confirmed = false;
  };

  Status Serve();
  Status ServeConnection();
  Result<bool> TakeSubmitted();  // true: stop requested and flushed (or out of time)
  Status PublishBurst();
  Result<int> DrainFrames();
  Status WaitForWork();
  Status OnEvent(Event& event);
  Status OnConfirm(const Confirm& confirm);
  void OnBody(std::span<const std::byte> body);
  void SyncReassemblyStats();
  void LogDrop(const char* reason, int claimed_rank, const std::string& detail);
  void OnHello(const ChunkHeader& header);
  Status Reconnect(const Status& cause);
  bool WaitBackoff(std::chrono::milliseconds d);  // true when a stop was requested
  void Install(Session session);
  void DropSession();
  Status Goodbye();
  void Finish(Status result);

  const IoConfig& config_;
  Shared& shared_;
  std::optional<Session> session_;
  std::deque<InFlight> inflight_;  // in submit order; the first `published_` have tags
  size_t published_ = 0;
  uint64_t last_tag_ = 0;
  Reassembler reassembler_;
  uint64_t reassembly_rejected_ = 0;  // reassembler_.rejected() already in stats.rejected
  std::set<std::pair<std::string, int>> logged_;  // (reason, claimed rank) already logged
  std::chrono::milliseconds idle_wait_{1000};
};

}  // namespace p2p::broker::amqp
