// Rendezvous: a small ZeroMQ service where the ranks of a run learn each other's endpoints
// (`p2ptrain broker --bind tcp://*:PORT`). Protocol in docs/wire-format.md.
//
// Each rank registers (run id, rank, size, its reachable endpoint). When all `size` ranks of a run
// have registered, every one of them receives the full endpoint list (index = rank). A rank that
// registers again with the same endpoint (a retry) is answered again; a different endpoint for a
// rank already taken, or a size that disagrees with the run's, gets an error reply naming it.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <functional>
#include <string>
#include <vector>

#include "broker/transport.h"

namespace p2p::broker {

struct RendezvousOptions {
  std::string bind = "tcp://*:5570";  // "tcp://127.0.0.1:*" picks a free port (see on_bound)
  size_t max_runs = 1024;             // runs held at once; more are refused
  int max_size = 4096;                // largest run size accepted
  std::chrono::seconds run_ttl{600};  // a run untouched this long is forgotten
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

// Registers with the rendezvous at `url` ("tcp://host:port" or "host:port") and blocks until the
// run is complete. Returns the endpoints of ranks 0..size-1 (entry `rank` is `my_endpoint`).
// InvalidArgument with the service's message if it refused the registration (duplicate rank,
// size mismatch, bad input); Timeout if the run was not complete by `deadline`.
Result<std::vector<std::string>> RegisterWithRendezvous(const std::string& url,
                                                        const std::string& run_id, int rank,
                                                        int size, const std::string& my_endpoint,
                                                        Deadline deadline);

}  // namespace p2p::broker
