// `p2ptrain train`: single-process training, the study's baseline role.
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <memory>

#include "ml/threads.h"
#include "peer/cli.h"
#include "peer/final_summary.h"
#include "peer/offload.h"
#include "peer/peer_run.h"
#include "peer/shard_check.h"
#include "peer/trainer.h"

namespace p2p::peer {
namespace {

// check_shard_rank: --size or --rank was given, so a --shard must be that rank's.
Status RunTrain(TrainConfig& config, bool check_shard_rank) {
  P2P_RETURN_IF_ERROR(FinishTrainFlags(config));
  P2P_RETURN_IF_ERROR(CheckShardForRun(config, check_shard_rank));
  P2P_RETURN_IF_ERROR(HandleStopSignals());
  ml::SetThreads(config.threads);
  spdlog::info("training {} on {} for {} epochs (batch {}, {} lr {}, {} threads)",
               config.model.name, config.data.name, config.epochs, config.batch_size,
               config.optimizer.name, config.optimizer.lr, config.threads);
  P2P_ASSIGN_OR_RETURN(auto trainer, Trainer::Create(config));
  P2P_RETURN_IF_ERROR(AttachOffload(*trainer, config.offload));
  spdlog::info("model {} with {} parameters", config.model.name, trainer->model().NumParams());
  P2P_ASSIGN_OR_RETURN(EpochResult last, trainer->Run());
  if (last.epoch < trainer->first_epoch()) {
    fmt::print("nothing to do: the checkpoint already has {} epochs\n", last.epoch);
    return Status::Ok();
  }
  fmt::print("{}\n", FinalSummary(last, config.evaluation));
  return Status::Ok();
}

}  // namespace

Action AddTrainCommand(CLI::App& app) {
  auto config = std::make_shared<TrainConfig>();
  CLI::App* cmd = app.add_subcommand(
      "train", "Train a model in one process (the study's single-machine baseline)");
  AddTrainFlags(*cmd, *config);
  AddShardFlags(*cmd, *config);
  AddOffloadFlags(*cmd, config->offload);
  return [config, cmd] {
    return RunExitCode(RunTrain(*config, cmd->count("--size") + cmd->count("--rank") > 0), *config);
  };
}

}  // namespace p2p::peer
