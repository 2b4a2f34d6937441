// Mailbox: the envelope layer between a Transport and the sync strategies.
//
// Every outgoing envelope gets the run id, this rank as sender and the next sequence number.
// Every incoming message is decoded as untrusted input and then either delivered to a waiting
// Collect, parked for a later round (a fast peer may already be one round ahead), or dropped and
// counted by reason: malformed, wrong run, stale (a round already completed), duplicate, unexpected
// sender, out of window (too far ahead to be honest). Nothing is applied that was not asked for.
//
// Thread-safety: one thread uses a Mailbox.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "broker/envelope.h"
#include "broker/transport.h"
#include "common/status.h"

namespace p2p::sync {

struct Round {
  uint64_t epoch = 0;
  uint64_t step = 0;
  auto operator<=>(const Round&) const = default;
};

// Why messages were dropped; machine-readable names for metrics.
struct RejectCounts {
  std::map<std::string, uint64_t> by_reason;
  uint64_t total() const;
};

class Mailbox {
 public:
  struct Options {
    std::string run_id;
    // Rounds further ahead than this (per message type) are rejected instead of parked, which
    // bounds the memory a misbehaving peer can make us hold.
    uint64_t max_rounds_ahead = 4;
  };
  Mailbox(broker::Transport& transport, Options options);

  int rank() const { return transport_.rank(); }
  int size() const { return transport_.size(); }

  // Fills run id, sender and sequence number, then sends to `to` (or everyone when kAllRanks).
  Status Send(broker::Envelope env, int to = broker::kAllRanks);

  // Blocks until an envelope of `type` for `round` arrived from every rank in `from`, or the
  // deadline passes (Timeout naming the missing ranks, with `what` describing the wait). Marks the
  // round complete for `type`, so late copies are dropped as stale. Returns envelopes by sender.
  Result<std::map<int, broker::Envelope>> Collect(broker::MessageType type, Round round,
                                                  const std::vector<int>& from,
                                                  broker::Deadline deadline,
                                                  const std::string& what);

  const RejectCounts& rejects() const { return rejects_; }
  broker::Transport& transport() { return transport_; }

 private:
  using Key = std::tuple<broker::MessageType, Round, int>;  // type, round, sender
  Status ReceiveOne(broker::Deadline deadline);
  void Park(broker::Envelope env);
  void Reject(const std::string& reason, const std::string& detail);

  broker::Transport& transport_;
  Options options_;
  uint64_t next_seq_ = 1;
  std::map<Key, broker::Envelope> parked_;
  std::map<broker::MessageType, Round> completed_;  // highest completed round per type
  RejectCounts rejects_;
  std::set<std::string> logged_reasons_;
};

}  // namespace p2p::sync
