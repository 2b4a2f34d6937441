// Rendezvous: a small ZeroMQ service where the ranks of a run learn each other's endpoints
// (`p2ptrain broker --bind tcp://*:PORT`). Protocol in docs/wire-format.md, threat model and
// limits in docs/security.md.
//
// Each rank registers (run id, rank, size, its reachable endpoint). When all `size` ranks of a run
// have registered, every one of them receives the full endpoint list (index = rank). A rank that
// registers again with the same endpoint (a retry) is answered again; a different endpoint for a
// rank already taken, or a size that disagrees with the run's, gets an error reply naming it.
// With a verifier (`--trust`), every registration must be signed by a trusted key, and a taken
// rank can be re-registered only by the key that holds it, with a newer signature.
// Memory, request rate and log volume are bounded per source address and in total
// (broker/rendezvous_registry.h).
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <functional>
#include <string>
#include <vector>

#include "broker/rendezvous_registry.h"
#include "broker/transport.h"

namespace p2p::broker {

struct RendezvousOptions {
  std::string bind = "tcp://*:5570";  // "tcp://127.0.0.1:*" picks a free port (see on_bound)
  int max_size = 4096;                // largest run size accepted
  rendezvous::Limits limits;          // memory, rate and time bounds
  // When set, registrations must be signed by a key it accepts; when empty, they are
  // unauthenticated (anyone who can reach the service can take a free rank).
  rendezvous::Verifier verifier;
  // Log lines (refusals, run events, summaries); optional. A summary every log_interval at most.
  std::function<void(const std::string& line)> log;
  std::chrono::seconds log_interval{60};
  // Called from the service thread after every batch of requests and every idle wake-up; for
  // tests and monitoring. Optional.
  std::function<void(const rendezvous::RegistryStats&)> on_stats;
  // How often the service looks at `stop` while idle.
  std::chrono::milliseconds stop_check_interval{100};
  // Called once from the service thread right after binding, with the bound endpoint
  // (ZMQ_LAST_ENDPOINT). Optional.
  std::function<void(const std::string& endpoint)> on_bound;
};

// Serves registrations until `stop` becomes true (checked at least every stop_check_interval),
// then returns Ok. IoError if the bind fails. Bad requests get error replies, never end the loop.
// Runs on the calling thread; owns its ZeroMQ context.
Status RunRendezvous(const RendezvousOptions& options, std::atomic<bool>& stop);

// Signs registrations for a rendezvous that requires them (`p2ptrain broker --trust`).
struct RegistrationSigner {
  Bytes key_id;  // the signer's key fingerprint: SHA-256 of its DER SubjectPublicKeyInfo
  std::function<Result<Bytes>(std::span<const std::byte> message)> sign;
};

// Registers with the rendezvous at `url` ("tcp://host:port" or "host:port") and blocks until the
// run is complete. Returns the endpoints of ranks 0..size-1 (entry `rank` is `my_endpoint`).
// InvalidArgument with the service's message if it refused the registration (duplicate rank,
// size mismatch, bad input); Timeout if the run was not complete by `deadline`. With a `signer`
// the registration is signed (time-stamped with this host's clock).
Result<std::vector<std::string>> RegisterWithRendezvous(const std::string& url,
                                                        const std::string& run_id, int rank,
                                                        int size, const std::string& my_endpoint,
                                                        Deadline deadline,
                                                        const RegistrationSigner* signer = nullptr);

}  // namespace p2p::broker
