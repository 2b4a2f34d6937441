// `p2ptrain peer`: one peer of a data-parallel run. Trains on its shard, exchanges gradients
// through the transport every round, agrees with the others at start, after every epoch and at
// the end, and writes per-epoch metrics including its share of the network traffic.
#pragma once

#include "common/status.h"
#include "peer/peer_options.h"
#include "peer/train_config.h"

namespace p2p::peer {

// Checks the peer flags that training does not (rank < size, sync schedule, transport names) and
// fills config.sync_every. InvalidArgument names the flag.
Status FinishPeerFlags(TrainConfig& config, PeerOptions& options);

// Runs the peer to completion. Errors say which peer or step failed and what to do.
Status RunPeer(TrainConfig config, const PeerOptions& options);

}  // namespace p2p::peer
