#include <spdlog/spdlog.h>

#include <thread>

#include "ml/dataset.h"
#include "ml/loss.h"
#include "ml/model.h"
#include "ml/optimizer.h"
#include "peer/cli.h"
#include "peer/cli_checks.h"

namespace p2p::peer {
namespace {

std::string JoinNames(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& n : names) out += (out.empty() ? "" : ", ") + n;
  return out;
}

void AddDataFlags(CLI::App& cmd, TrainConfig& c) {
  cmd.add_option("--dataset", c.data.name, "Dataset: " + JoinNames(ml::DatasetNames()))
      ->check(CLI::IsMember(ml::DatasetNames()));
  cmd.add_option("--data-dir", c.data.data_dir,
                 "Directory of the dataset files (default: the dataset's standard location, e.g. "
                 "/usr/share/datasets/fashion-mnist)");
  cmd.add_option("--shard", c.shard_path, "Train on a shard file written by `p2ptrain split`");
  cmd.add_option("--data-seed", c.data.seed,
                 "Seed of the train/validation split and of the partition among peers")
      ->transform(Unsigned64());
  // Synthetic sizes are capped so the data (float32) stays far below any machine's memory.
  cmd.add_option("--synthetic-train", c.data.synthetic_train, "synthetic: training samples")
      ->transform(IntIn(1, 10'000'000));
  cmd.add_option("--synthetic-test", c.data.synthetic_test, "synthetic: test samples")
      ->transform(IntIn(1, 10'000'000));
  cmd.add_option("--synthetic-dim", c.data.synthetic_dim, "synthetic: features per sample")
      ->transform(IntIn(1, 100'000));
}

void AddModelFlags(CLI::App& cmd, TrainConfig& c) {
  cmd.add_option("--model,--model_str", c.model.name, "Model: " + JoinNames(ml::Model::Names()))
      ->check(CLI::IsMember(ml::Model::Names()));
  cmd.add_option("--hidden", c.model.hidden, "mlp hidden layer widths, comma-separated")
      ->delimiter(',')
      ->transform(PositiveInt());
  cmd.add_option("--dropout", c.model.dropout, "Dropout before the last layer (0 = off)")
      ->transform(RealIn(0, 0.95, /*lo_inclusive=*/true));
  cmd.add_option("--loss", c.loss,
                 "Loss: cross_entropy (on logits) or NLL (model ends in "
                 "log-softmax)")
      ->check(CLI::IsMember({"cross_entropy", "NLL", "nll"}));
}

void AddOptimizerFlags(CLI::App& cmd, TrainConfig& c) {
  cmd.add_option("--optimizer", c.optimizer.name, "Optimizer: " + JoinNames(ml::Optimizer::Names()))
      ->check(CLI::IsMember(ml::Optimizer::Names()));
  cmd.add_option("--lr", c.optimizer.lr, "Learning rate")->transform(PositiveReal());
  cmd.add_option("--momentum", c.optimizer.momentum,
                 "Momentum (sgd, rmsprop); default 0.9 for sgd, 0 otherwise")
      ->default_str("0.9 for sgd")
      ->transform(RealIn(0, 1, /*lo_inclusive=*/true));
  cmd.add_flag("--nesterov", c.optimizer.nesterov, "Nesterov momentum (sgd)");
  cmd.add_option("--weight-decay", c.optimizer.weight_decay, "Weight decay")
      ->transform(NonNegativeReal());
  cmd.add_flag("--lr-plateau,!--no-lr-plateau", c.lr_plateau,
               "ReduceLROnPlateau on validation loss (factor 0.1, patience 5, min lr 1e-6)");
  auto& sched = c.lr_schedule;
  cmd.add_option(
         "--lr-schedule", sched.schedule,
         "Learning-rate schedule, stepped per epoch: plateau (ReduceLROnPlateau, with "
         "--lr-plateau), step (x --lr-gamma every --lr-step-size epochs), multistep (x "
         "--lr-gamma at each --lr-milestones epoch), cosine (to --lr-min at the last epoch)")
      ->check(CLI::IsMember(ml::ScheduleNames()));
  cmd.add_option("--warmup-epochs", sched.warmup_epochs,
                 "Linear warmup: epoch e <= N trains with lr * e / (N + 1), then the schedule")
      ->transform(NonNegativeInt(1 << 20));
  cmd.add_option("--lr-scale", sched.scale,
                 "Scale --lr with the number of peers W: none, linear (x W: the effective batch is "
                 "W x --batch), sqrt (x sqrt(W))")
      ->check(CLI::IsMember({"none", "linear", "sqrt"}));
  cmd.add_option("--lr-step-size", sched.step_size, "step schedule: epochs between decays")
      ->transform(PositiveInt());
  cmd.add_option("--lr-milestones", sched.milestones,
                 "multistep schedule: epoch counts at which the lr decays, e.g. 30,60,80")
      ->delimiter(',')
      ->transform(PositiveInt());
  cmd.add_option("--lr-gamma", sched.gamma, "step, multistep: decay factor")
      ->transform(RealIn(0, 1, /*lo_inclusive=*/false));
  cmd.add_option("--lr-min", sched.min_lr, "cosine: the final learning rate")
      ->transform(NonNegativeReal());
  cmd.add_flag("--early-stopping,!--no-early-stopping", c.early_stopping,
               "Stop when validation loss has not improved for --patience epochs");
  cmd.add_option("--patience", c.early_stopping_patience, "Early-stopping patience in epochs")
      ->transform(PositiveInt());
}

void AddRunFlags(CLI::App& cmd, TrainConfig& c) {
  cmd.add_option("--batch_size,--batch", c.batch_size, "Minibatch size")->transform(PositiveInt());
  cmd.add_option("--epochs", c.epochs, "Number of epochs")->transform(PositiveInt());
  cmd.add_option("--seed", c.seed, "Seed of model initialisation and batch order")
      ->transform(Unsigned64());
  cmd.add_option("--threads", c.threads, "Compute threads (0 = all cores)")
      ->transform(NonNegativeInt(1024));
  cmd.add_flag("--evaluation{true},!--no-evaluation", c.evaluation,
               "Evaluate validation loss and test accuracy every epoch (the study's flag)");
  cmd.add_option("--metrics", c.metrics_path, "Write per-epoch metrics as JSON lines to FILE");
  cmd.add_option("--checkpoint-dir", c.checkpoint_dir,
                 "Save parameters and optimizer state after every epoch (atomically) in DIR");
  cmd.add_flag("--resume", c.resume, "Continue from the checkpoint in --checkpoint-dir");
  cmd.add_flag("--overwrite", c.overwrite,
               "Start from epoch 1 even if --checkpoint-dir holds a checkpoint (replaced after "
               "the first epoch); without it such a run is refused");
  cmd.add_option("--progress", c.progress,
                 "Progress display: auto (bar on a terminal, a line every 10 s otherwise), bar, "
                 "lines, off, json (JSON events on stdout, read by `p2ptrain launch`)")
      ->check(CLI::IsMember({"auto", "bar", "lines", "off", "json"}));
}

}  // namespace

void AddShardFlags(CLI::App& cmd, TrainConfig& c) {
  cmd.add_option("--size", c.size, "Number of peers the training data is divided among")
      ->transform(IntIn(1, 4096));
  cmd.add_option("--rank", c.rank, "This peer's rank, 0..size-1: which shard it trains on")
      ->transform(IntIn(0, 4095));
  cmd.add_option("--partition", c.partition,
                 "Unequal shards: one weight per rank, e.g. 3,1,1,1 (default: equal shards)")
      ->delimiter(',')
      ->transform(PositiveReal());
}

void AddTrainFlags(CLI::App& cmd, TrainConfig& config) {
  AddDataFlags(cmd, config);
  AddModelFlags(cmd, config);
  AddOptimizerFlags(cmd, config);
  AddRunFlags(cmd, config);
}

Status FinishTrainFlags(TrainConfig& config) {
  if (config.loss == "nll") config.loss = "NLL";
  config.ResolveDefaults();
  P2P_RETURN_IF_ERROR(config.lr_schedule.Validate(config.epochs));
  if (config.threads == 0) config.threads = static_cast<int>(std::thread::hardware_concurrency());
  if (config.optimizer.nesterov && config.optimizer.momentum <= 0) {
    return InvalidArgument("--nesterov needs --momentum > 0");
  }
  if (config.resume && config.checkpoint_dir.empty()) {
    return InvalidArgument("--resume needs --checkpoint-dir");
  }
  if (config.rank >= config.size) {
    return InvalidArgument("--rank {} is outside 0..{} (--size {})", config.rank, config.size - 1,
                           config.size);
  }
  if (!config.partition.empty()) {
    if (static_cast<int>(config.partition.size()) != config.size) {
      return InvalidArgument("--partition has {} weights but --size is {}; give one per rank",
                             config.partition.size(), config.size);
    }
    for (double w : config.partition) {
      if (!(w > 0)) return InvalidArgument("--partition weights must be positive, got {}", w);
    }
  }
  return Status::Ok();
}

int ExitCodeFor(const Status& status) {
  if (status.ok()) return kExitOk;
  spdlog::error("{}", status.message());
  return status.code() == StatusCode::kInvalidArgument ? kExitUsage : kExitRuntime;
}

}  // namespace p2p::peer
