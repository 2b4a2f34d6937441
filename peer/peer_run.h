// `p2ptrain peer`: one peer of a data-parallel run. Trains on its shard, exchanges gradients
// through the transport every round, agrees with the others at start, after every epoch and at
// the end, and writes per-epoch metrics including its share of the network traffic.
#pragma once

#include <chrono>

#include "common/status.h"
#include "peer/peer_options.h"
#include "peer/train_config.h"

namespace p2p::peer {

// Checks the peer flags that training does not (rank < size, sync schedule, transport names) and
// fills config.sync_every. InvalidArgument names the flag.
Status FinishPeerFlags(TrainConfig& config, PeerOptions& options);

// Runs the peer to completion. Errors say which peer or step failed and what to do.
Status RunPeer(TrainConfig config, const PeerOptions& options);

// How long a run stopped by SIGINT/SIGTERM may take to reach a safe point (the end of the round,
// or the cancellation of its offloaded tasks) before it is ended anyway (common/stop_signal.h).
// Below `launch`'s own 5 s before it sends SIGKILL.
inline constexpr std::chrono::milliseconds kStopGrace{3000};

// Installs the SIGINT/SIGTERM handling of a training run (train, peer).
Status HandleStopSignals();

// The exit code of a training run: ExitCodeFor, except that a run a signal stopped logs why
// (with what to do: --resume if it keeps checkpoints) and exits 128 + signo.
int RunExitCode(const Status& status, const TrainConfig& config);

}  // namespace p2p::peer
