// The training loop shared by `p2ptrain train` and (with a gradient hook) `p2ptrain peer`.
#pragma once

#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>

#include "common/status.h"
#include "ml/dataset.h"
#include "ml/epoch_schedule.h"
#include "ml/model.h"
#include "ml/optimizer.h"
#include "peer/checkpoint.h"
#include "peer/metrics.h"
#include "peer/progress.h"
#include "peer/train_config.h"
#include "sync/epoch_summary.h"

namespace p2p::peer {

// One synchronisation round: the gradient of `samples` local samples (0 when this peer's shard
// is exhausted before the agreed number of steps), averaged over `sync_every` minibatches.
struct StepInfo {
  int epoch = 0;      // 1-based
  int64_t round = 0;  // 0-based within the epoch
  int64_t samples = 0;
};

// What a hook decided about its round.
enum class RoundOutcome {
  kApply,              // go on: apply the gradient (gradient hook) / finish the epoch (epoch hook)
  kRedoPreviousRound,  // the peers changed membership and this peer is one round ahead of the
                       // survivors: undo the last applied round and run it again (needs
                       // keep_rollback)
};
// Called with the local mean gradient of a round before the optimizer applies it. A peer replaces
// `grad` by the average over all peers here. Returning an error stops training.
using GradientHook = std::function<Result<RoundOutcome>(const StepInfo&, std::span<float> grad)>;
// Called at the end of an epoch with this process's totals (training loss, its slice of the
// validation and test sets, parameter hash); a peer replaces them with the run-wide totals so that
// every peer's LR schedule and early stopping see the same numbers.
using EpochHook = std::function<Result<RoundOutcome>(int epoch, sync::EpochTotals& totals)>;
// A part of a round's samples whose gradient is computed elsewhere (a function process).
struct GradientPart {
  ml::Matrix x;
  std::vector<int32_t> y;
};
// Computes the sample-weighted mean gradient of `parts` at `params` into `grad` and returns the
// sum of the per-sample losses. Replaces in-process gradient computation (--offload).
using GradientOffload = std::function<Result<double>(
    std::vector<GradientPart>& parts, std::span<const float> params, std::span<float> grad)>;
// Applies a round's combined gradient to the parameters instead of the optimizer's in-process
// Step (SPIRT updates the model inside its database and reads it back). Gets the optimizer for
// its learning rate (ReduceLROnPlateau changes it) or to step in the process.
using UpdateHook = std::function<Status(std::span<float> params, std::span<const float> grad,
                                        ml::Optimizer& optimizer)>;
// Extra fields for an epoch's metrics record (e.g. a peer's network counters for that epoch).
using MetricsExtra = std::function<nlohmann::json(int epoch)>;
// Called after each epoch but the last (checkpoint and metrics written), before the next begins:
// where the members of an elastic run admit a restarted peer (peer/elastic_join.h).
using BetweenEpochsHook = std::function<Status(int epoch)>;

struct EpochResult {
  int epoch = 0;
  double train_loss = 0, lr = 0;
  // Empty when not measured (--no-evaluation, or no validation/test samples anywhere in the run):
  // reported as null, never as a zero that reads like a result.
  std::optional<double> val_loss, test_accuracy;
  double compute_seconds = 0, update_seconds = 0, hook_seconds = 0, eval_seconds = 0;
  double wall_seconds = 0;
  int64_t samples = 0, rounds = 0;  // this process's training samples and sync rounds
  double samples_per_second = 0;
  bool early_stop = false;
  std::string param_hash;
};

class Trainer {
 public:
  // Loads the data (dataset or shard file), builds model and optimizer, and resumes from the
  // checkpoint if asked. Errors name what was wrong (path, flag, package).
  static Result<std::unique_ptr<Trainer>> Create(TrainConfig config);

  void set_gradient_hook(GradientHook hook) { hook_ = std::move(hook); }
  // A rollback restores only the in-process parameters and optimizer: with keep_rollback the
  // hook's owner must undo its own part (SPIRT does in Strategy::LoadState).
  void set_update_hook(UpdateHook hook) { update_hook_ = std::move(hook); }
  // Evaluates only slice `rank` of `size` of the validation and test sets (loaded as slices when
  // config.evaluation_slice is set, cut here otherwise) and lets `hook` combine the slices' totals
  // across peers.
  void set_epoch_hook(EpochHook hook);
  void add_metrics_extra(MetricsExtra extra) { metrics_extra_.push_back(std::move(extra)); }
  void set_between_epochs_hook(BetweenEpochsHook hook) { between_epochs_ = std::move(hook); }
  // Everything a checkpoint after `epoch` holds, from the current state (what a member sends a
  // rejoining peer).
  Checkpoint Snapshot(int epoch) const;
  // Continues from `c` as --resume would (parameters, optimizer, LR plateau, early stopping,
  // sync state through set_sync_state's restore, the next epoch); `source` names where it came
  // from in errors. InvalidArgument if it was written by another configuration.
  Status Adopt(const Checkpoint& c, const std::string& source);
  // Offloads gradient work: with --sync-every 1 each minibatch is split into `parts_per_batch`
  // parts; with larger rounds every minibatch of the round is one part (the study's Step
  // Function fan-out). Functions always see the current parameters.
  void set_gradient_offload(GradientOffload offload, int parts_per_batch) {
    offload_ = std::move(offload);
    parts_per_batch_ = parts_per_batch;
  }
  // State of the gradient hook's owner that checkpoints must carry (a codec's error-feedback
  // buffers): `save` is called when a checkpoint is written; `restore` gets what a resumed
  // checkpoint held, at once (the checkpoint was read by Create).
  using SyncState = std::vector<std::vector<float>>;
  Status set_sync_state(std::function<SyncState()> save,
                        const std::function<Status(SyncState)>& restore);
  // Minibatches per epoch on this process's data, and the number every peer runs (the largest
  // among peers, agreed at start; 0 = local_steps()). Extra steps contribute no samples.
  int64_t local_steps() const;
  void set_steps_per_epoch(int64_t steps) { steps_per_epoch_ = steps; }
  // Keeps what the last applied round changed (parameters, optimizer state, the epoch's running
  // totals) so that a hook may ask for it to be redone (RoundOutcome::kRedoPreviousRound). Costs
  // a copy of the parameters and the optimizer state per round.
  void keep_rollback(bool keep) { keep_rollback_ = keep; }
  // Trains for the remaining epochs; returns the last epoch's result.
  Result<EpochResult> Run();

  ml::Model& model() { return *model_; }
  const ml::Splits& data() const { return data_; }
  // For experiments that poison this peer's training data (peer/attack.h: labelflip).
  ml::Dataset& mutable_train_data() { return data_.train; }
  int first_epoch() const { return first_epoch_; }

 private:
  Trainer(TrainConfig config, ml::Splits data, std::unique_ptr<ml::Model> model,
          std::unique_ptr<ml::Optimizer> optimizer, MetricsWriter metrics);
  Status MaybeResume();
  Result<EpochResult> RunEpoch(int epoch);
  // Trains rounds first_round.. of the epoch (0: all of them).
  Status TrainOneEpoch(int epoch, EpochResult& result, sync::EpochTotals& totals,
                       int64_t first_round);
  // The mean gradient of one round's minibatches into `grad`; returns its sample count.
  Result<int64_t> RoundGradient(const std::vector<std::span<const size_t>>& batches,
                                std::span<float> grad, EpochResult& r, sync::EpochTotals& totals);
  Result<RoundOutcome> FinishRound(const StepInfo& info, std::span<float> grad,
                                   EpochResult& result);
  Result<RoundOutcome> Evaluate(int epoch, EpochResult& result, sync::EpochTotals& totals);
  // The state before the last applied round (keep_rollback).
  struct Rollback {
    bool valid = false;
    int64_t round = 0;  // its index in the epoch
    std::vector<float> params;
    ml::Optimizer::State optimizer;
    sync::EpochTotals totals;  // the epoch's totals before its gradient was computed
    int64_t rounds = 0;
  };
  void RestoreRollback(EpochResult& result, sync::EpochTotals& totals);
  Status SaveCheckpointAfter(int epoch);
  Status WriteMetrics(const EpochResult& r);

  TrainConfig config_;
  ml::Splits data_;  // validation and test: what Evaluate measures (whole, or this peer's slices)
  std::unique_ptr<ml::Model> model_;
  std::unique_ptr<ml::Optimizer> optimizer_;
  ml::ReduceLrOnPlateau plateau_;
  ml::EpochSchedule schedule_;  // the lr of each epoch (--lr-schedule, --warmup-epochs, --lr-scale)
  ml::EarlyStopping early_stopping_;
  MetricsWriter metrics_;
  Progress progress_;
  GradientHook hook_;
  UpdateHook update_hook_;
  EpochHook epoch_hook_;
  std::vector<MetricsExtra> metrics_extra_;
  GradientOffload offload_;
  int parts_per_batch_ = 1;
  ml::AlignedFloats accumulated_;  // sum of sample-weighted gradients of the current round
  int64_t steps_per_epoch_ = 0;
  bool keep_rollback_ = false;
  Rollback rollback_;
  int first_epoch_ = 1;
  std::function<SyncState()> save_sync_state_;
  std::function<Status(SyncState)> restore_sync_state_;
  BetweenEpochsHook between_epochs_;
  SyncState resumed_sync_state_;  // from the checkpoint, until set_sync_state takes it
};

}  // namespace p2p::peer
