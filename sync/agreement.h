// Start and end agreement among the peers of a run.
//
// At start every peer broadcasts the fingerprint of its configuration and the hash of its initial
// parameters and checks everyone else's: peers that would silently train different models fail
// here, with both values in the error. At the end the same exchange of the final parameter hash
// doubles as a barrier (nobody tears down its transport while others still need its messages)
// and proves that all peers ended with identical parameters.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"
#include "sync/mailbox.h"

namespace p2p::sync {

// Also shares each peer's local step count (peers with unequal shards need one agreed number of
// rounds per epoch); returns local_steps of every rank, indexed by rank.
Result<std::vector<uint64_t>> AgreeOnStart(Mailbox& mailbox, const std::string& config_fingerprint,
                                           const std::string& params_hash, uint64_t local_steps,
                                           broker::Deadline deadline);
Status AgreeOnEnd(Mailbox& mailbox, uint64_t epochs_done, const std::string& params_hash,
                  broker::Deadline deadline);

}  // namespace p2p::sync
