// InProcTransport: the W ranks of a run inside one process, for unit tests of sync/ strategies.
//
// One InProcHub holds a mailbox per rank (mutex + condition variable + FIFO queue). Send copies
// the message into the receiver's mailbox; Receive waits on its own mailbox's condition variable
// until a message or the deadline (no polling). Messages from one sender to one receiver arrive in
// send order. No chunking and no size limit: nothing is serialised.
//
// Thread-safety: every method of InProcTransport may be called from any thread (stronger than
// Transport requires). The hub is shared (std::shared_ptr) by the transports of the group and
// lives as long as the longest-lived of them.
#pragma once

#include <atomic>
#include <memory>
#include <vector>

#include "broker/transport.h"

namespace p2p::broker {

class InProcHub;

class InProcTransport final : public Transport {
 public:
  // Use MakeInProcGroup; `rank` must be in [0, hub->size()).
  InProcTransport(std::shared_ptr<InProcHub> hub, int rank);
  ~InProcTransport() override;

  int rank() const override { return rank_; }
  int size() const override;
  // Waits until every rank of the group has called Connect; Timeout naming the ranks that did not.
  Status Connect(Deadline deadline) override;
  // Unavailable if this transport or the receiver is closed; InvalidArgument for a bad rank.
  Status Send(int to_rank, std::span<const std::byte> msg) override;
  // Delivers to every open member; Unavailable naming the closed ones (the others still get it).
  Status Broadcast(std::span<const std::byte> msg) override;
  // Unavailable once this transport is closed (also wakes a Receive blocked in another thread).
  Result<std::optional<Message>> Receive(Deadline deadline) override;
  TransportStats Stats() const override;
  // Drops queued messages; later sends to this rank fail with Unavailable. Idempotent.
  Status Close() override;

 private:
  std::shared_ptr<InProcHub> hub_;
  const int rank_;
  std::atomic<uint64_t> bytes_sent_{0}, bytes_received_{0};
  std::atomic<uint64_t> messages_sent_{0}, messages_received_{0};
};

// Creates the `size` connected-by-memory transports of one group; element i has rank i.
// Precondition: 1 <= size <= kMaxInProcRanks.
inline constexpr int kMaxInProcRanks = 4096;
std::vector<std::unique_ptr<InProcTransport>> MakeInProcGroup(int size);

}  // namespace p2p::broker
