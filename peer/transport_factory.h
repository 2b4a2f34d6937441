// Builds the Transport a peer talks through from its command-line options.
#pragma once

#include <memory>

#include "broker/rendezvous.h"
#include "broker/transport.h"
#include "common/status.h"
#include "peer/peer_options.h"

namespace p2p::peer {

// Creates (but does not connect) the transport for `rank` of `size`. For zmq with --rendezvous it
// binds, registers and waits for the run's other endpoints until `deadline`. InvalidArgument for
// bad options (naming the flag), Unavailable/Timeout when the rendezvous cannot be reached.
// `signer` (optional) signs the rendezvous registration.
Result<std::unique_ptr<broker::Transport>> CreateTransport(
    const PeerOptions& options, int rank, int size, broker::Deadline deadline,
    const broker::RegistrationSigner* signer = nullptr);

}  // namespace p2p::peer
