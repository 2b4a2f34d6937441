// Strategy: how peers combine their gradients in one synchronisation round.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "common/status.h"
#include "sync/codecs/codec.h"
#include "sync/mailbox.h"

namespace p2p::sync {

// Where a strategy's time went, summed over rounds (the study's send and receive/wait times), and
// what the codec did to the bytes.
struct SyncTimings {
  double send_seconds = 0;     // encoding and handing our gradient to the transport
  double wait_seconds = 0;     // blocked until every needed peer's gradient arrived
  double reduce_seconds = 0;   // decoding and averaging
  double encode_seconds = 0;   // the codec's Encode of our gradient (part of send_seconds)
  double decode_seconds = 0;   // the codec's Decode of all W gradients, ours too (part of reduce)
  uint64_t raw_bytes = 0;      // our gradients as float32 (4 x P per round)
  uint64_t encoded_bytes = 0;  // our gradients' codec payloads
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
  // What a checkpoint must carry for a resumed run to continue bit-exactly: a codec's
  // error-feedback residual and momentum-correction velocity. Empty when stateless.
  virtual std::vector<std::vector<float>> SaveState() const { return {}; }
  // Restores SaveState's output (between rounds). InvalidArgument if this strategy and codec
  // cannot hold it, e.g. a checkpoint of a run with another --compression.
  virtual Status LoadState(std::vector<std::vector<float>> state) {
    if (state.empty()) return Status::Ok();
    return InvalidArgument(
        "the checkpoint holds {} codec buffer(s) but this run's --strategy and "
        "--compression keep none; resume with the checkpoint's flags",
        state.size());
  }

 protected:
  SyncTimings timings_;
};

struct StrategyOptions {
  std::chrono::milliseconds peer_timeout{std::chrono::seconds(60)};
  // The gradient codec of the run (every peer must use the same; a gradient encoded otherwise is
  // refused) and the run's seed, from which stochastic codecs draw per (rank, round).
  codecs::CodecConfig codec{};
  uint64_t seed = 0;
  // How the W decoded gradients become one (sync/rules/rule.h); every peer must use the same.
  std::string rule = "mean";
  // Experiments only (peer/attack.h: alie, ipm). Set on an attacking peer whose attack needs the
  // round's honest gradients: it waits for the gradients of every member not in `attackers`,
  // hands them (rank order) to `corrupt` with its own gradient to overwrite, and only then
  // sends. Only allgather-average, where every peer receives every gradient, can do this.
  struct OmniscientAttack {
    std::vector<int> attackers;
    std::function<void(const std::vector<std::span<const float>>& honest, std::span<float> grad)>
        corrupt;
  };
  std::optional<OmniscientAttack> omniscient_attack;
  // mlless (sync/mlless.h): the significance threshold v, the parameters the update will be
  // applied to (read at the start of each round), and the learning rate that turns the
  // accumulated gradient into a parameter change (0: compare the accumulated gradient itself).
  double significance = 0.01;
  double learning_rate = 0;
  std::function<std::span<const float>()> parameters = nullptr;
  // Bounded staleness (sync/staleness.h): the update of round r is round r-S's; 0 = synchronous.
  int staleness = 0;
};

// By name ("allgather-average"); an unknown name, an invalid codec or rule, or a rule the
// strategy cannot apply is InvalidArgument.
Result<std::unique_ptr<Strategy>> MakeStrategy(const std::string& name, Mailbox& mailbox,
                                               const StrategyOptions& options);
std::vector<std::string> StrategyNames();

}  // namespace p2p::sync
