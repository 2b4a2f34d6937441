// Strategy: how peers combine their gradients in one synchronisation round.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "common/status.h"
#include "sync/mailbox.h"

namespace p2p::sync {

// Where a strategy's time went, summed over rounds (the study's send and receive/wait times).
struct SyncTimings {
  double send_seconds = 0;    // encoding and handing our gradient to the transport
  double wait_seconds = 0;    // blocked until every needed peer's gradient arrived
  double reduce_seconds = 0;  // decoding and averaging
  uint64_t rounds = 0;
};

class Strategy {
 public:
  virtual ~Strategy() = default;
  // `grad` holds this peer's mean gradient over `samples` samples (0: it had no data this round).
  // On success it holds the sample-weighted average over all peers — bitwise the same on every
  // peer. On error `grad` is unspecified and must not be applied.
  virtual Status Average(Round round, uint32_t samples, std::span<float> grad) = 0;
  const SyncTimings& timings() const { return timings_; }

 protected:
  SyncTimings timings_;
};

struct StrategyOptions {
  std::chrono::milliseconds peer_timeout{std::chrono::seconds(60)};
};

// By name ("allgather-average"); an unknown name is InvalidArgument listing the valid ones.
Result<std::unique_ptr<Strategy>> MakeStrategy(const std::string& name, Mailbox& mailbox,
                                               const StrategyOptions& options);
std::vector<std::string> StrategyNames();

}  // namespace p2p::sync
