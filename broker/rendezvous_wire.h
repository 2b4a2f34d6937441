// The rendezvous service's messages (broker/rendezvous.cc), exposed for the fuzz target
// tests/fuzz/fuzz_rendezvous.cc and its seeds: the service decodes requests from anyone who can
// reach its port, and a peer decodes whatever answers on the service's address. The service and
// RegisterWithRendezvous use the same encoders and decoders internally.
#pragma once

#include <span>
#include <string>
#include <vector>

#include "broker/envelope.h"
#include "common/status.h"

namespace p2p::broker::rendezvous_wire {

Bytes EncodeRegisterRequest(const std::string& run_id, int rank, int size,
                            const std::string& endpoint);
Bytes EncodeOkReply(const std::vector<std::string>& endpoints);
Bytes EncodeErrorReply(const std::string& error);

// What the service does with a request's bytes: Ok if it would register it, else the error it
// would send back. `max_size` as RendezvousOptions::max_size.
Status CheckRequest(std::span<const std::byte> data, int max_size);
// What RegisterWithRendezvous does with a reply's bytes for a run of `size` ranks.
Status CheckReply(std::span<const std::byte> data, int size);

}  // namespace p2p::broker::rendezvous_wire
