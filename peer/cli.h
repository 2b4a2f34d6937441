// The `p2ptrain` command line: one CLI11 app with a subcommand per role.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>

#include "common/status.h"
#include "peer/train_config.h"

namespace p2p::peer {

// Documented exit codes (README): 0 success, 1 runtime failure, 2 usage error.
constexpr int kExitOk = 0;
constexpr int kExitRuntime = 1;
constexpr int kExitUsage = 2;

// A subcommand's action, run after parsing succeeded; returns the process exit code.
using Action = std::function<int()>;

// Flags shared by every role that trains (train, peer): data, model, optimizer, run control.
void AddTrainFlags(CLI::App& cmd, TrainConfig& config);
// --size/--rank/--partition: which shard of the training data this process trains on.
void AddShardFlags(CLI::App& cmd, TrainConfig& config);
// --offload, --functions, --fn-*: gradient work on function processes.
void AddOffloadFlags(CLI::App& cmd, OffloadConfig& config);
// Turns parsed flag text into config fields; a bad value is kInvalidArgument naming the flag.
Status FinishTrainFlags(TrainConfig& config);

Action AddTrainCommand(CLI::App& app);
Action AddSplitCommand(CLI::App& app);
Action AddLaunchCommand(CLI::App& app);
Action AddPeerCommand(CLI::App& app);
Action AddBrokerCommand(CLI::App& app);
Action AddFunctionCommand(CLI::App& app);
Action AddKeygenCommand(CLI::App& app);

// Runs a Status-returning body, printing the error and mapping it to an exit code.
int ExitCodeFor(const Status& status);

}  // namespace p2p::peer
