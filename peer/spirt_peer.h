// `p2ptrain peer --strategy spirt`: the store flags, their checks, and the SPIRT strategy built
// from them (spirt/spirt_strategy.h, docs/spirt.md).
#pragma once

#include <CLI/CLI.hpp>
#include <memory>

#include "common/status.h"
#include "peer/peer_options.h"
#include "peer/train_config.h"
#include "peer/trainer.h"
#include "spirt/spirt_strategy.h"
#include "sync/mailbox.h"

namespace p2p::peer {

void AddStoreFlags(CLI::App& cmd, PeerOptions& options);

// Checks the store flags against the rest: spirt needs a database (--store or --store-peers),
// the mean rule, no codec, no --resume (the optimizer state lives in the database and is not in
// checkpoints).
Status FinishStoreFlags(const TrainConfig& config, PeerOptions& options);

// Connects to this peer's database and learns the others' (--store-peers).
Result<std::unique_ptr<spirt::SpirtStrategy>> MakeSpirtStrategy(sync::Mailbox& mailbox,
                                                                const TrainConfig& config,
                                                                const PeerOptions& options,
                                                                std::chrono::milliseconds timeout);

// Puts the initial parameters into the database and lets `spirt` update the model there; with
// --offload, attaches the functions on the store path (they read the parameters from and write
// their gradients to this peer's database).
Status AttachSpirt(Trainer& trainer, spirt::SpirtStrategy& spirt, const OffloadConfig& offload);

}  // namespace p2p::peer
