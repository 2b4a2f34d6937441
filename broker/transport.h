// Transport: moves opaque byte messages between the ranks of one run.
//
// Implementations: ZeroMQ mesh (broker/zmq_*), AMQP through RabbitMQ (broker/amqp_*), in-process
// (broker/inproc_*, for tests). A transport knows nothing of envelopes, gradients or training; the
// sync/ layer puts an Envelope (broker/envelope.h) into each message.
//
// Thread-safety: one thread calls Send/Broadcast/Receive; implementations may run background
// threads (heartbeats, I/O) whose failures surface as the Status of the next call.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "common/status.h"

namespace p2p::broker {

using Bytes = std::vector<std::byte>;
using Clock = std::chrono::steady_clock;
using Deadline = Clock::time_point;

inline Deadline DeadlineIn(std::chrono::milliseconds d) { return Clock::now() + d; }

struct Message {
  int from_rank = -1;  // as claimed by the transport's framing; sync/ trusts only the envelope
  Bytes payload;
  // Which of the transport's sources delivered it (ZeroMQ: the connection), for ConfirmSender;
  // 0 when the transport does not tell its sources apart.
  uint64_t link = 0;
};

// Counters since the transport was created; callers take differences per epoch.
struct TransportStats {
  uint64_t bytes_sent = 0;  // payload bytes handed to the wire (after chunking overhead)
  uint64_t bytes_received = 0;
  uint64_t messages_sent = 0;
  uint64_t messages_received = 0;
  uint64_t rejected = 0;  // frames dropped as malformed/oversized
};

class Transport {
 public:
  virtual ~Transport() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // Blocks until every member of the run is reachable (connected / queue bound), or the deadline.
  virtual Status Connect(Deadline deadline) = 0;
  // Queues `msg` for `to_rank` (!= rank()). Large messages are chunked transparently.
  virtual Status Send(int to_rank, std::span<const std::byte> msg) = 0;
  // Sends to every other member.
  virtual Status Broadcast(std::span<const std::byte> msg) = 0;
  // True when Broadcast is one hand-off that something else fans out (AMQP: one publish, the
  // broker routes a copy to every queue), so a dead receiver cannot block or fail it. False when
  // Broadcast sends to each member itself (ZeroMQ, in-process).
  virtual bool FansOutElsewhere() const { return false; }
  // Next whole message addressed to this rank. std::nullopt when the deadline passes (a value,
  // not an error); an error Status when the transport itself failed.
  virtual Result<std::optional<Message>> Receive(Deadline deadline) = 0;
  virtual TransportStats Stats() const = 0;
  // The layer above authenticated a message that arrived over `link` (Message::link) from `rank`
  // (its MAC verified under that rank's session key): that source is the real rank, and a
  // transport that tells sources apart keeps it ahead of the unproven ones that claim the same
  // rank (ZeroMQ: never replaced by them, its incomplete messages never evicted for theirs).
  virtual void ConfirmSender(int rank, uint64_t link) {
    (void)rank;
    (void)link;
  }
  // Releases resources; for AMQP also deletes this peer's queue (and the run's exchange when the
  // last member leaves). Idempotent.
  virtual Status Close() = 0;
};

}  // namespace p2p::broker
