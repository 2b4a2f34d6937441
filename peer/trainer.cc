#include "peer/trainer.h"

#include <spdlog/spdlog.h>

#include <chrono>
#include <filesystem>

#include "common/hash.h"
#include "common/stop_signal.h"
#include "peer/checkpoint.h"
#include "peer/data_loading.h"
#include "peer/memory_budget.h"
#include "peer/system_stats.h"

namespace p2p::peer {
namespace {

using Clock = std::chrono::steady_clock;
double Since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// param_hash: the parameters' bits, then the BatchNorm buffers' (chained FNV-1a), so peers that
// agree on it hold the same model for evaluation too. Without buffers it is HashFloats(params).
std::string ModelHash(const ml::Model& model) {
  const uint64_t h =
      Fnv1a64(std::as_bytes(model.Buffers()), Fnv1a64(std::as_bytes(model.Params())));
  return fmt::format("{:016x}", h);
}

// Rows `order` of `data` gathered into a batch: float features made here, per batch (the dataset
// may hold bytes).
void GatherBatch(const ml::Dataset& data, std::span<const size_t> order, ml::Matrix& x,
                 std::vector<int32_t>& y) {
  data.GatherRows(order, x);
  y.resize(order.size());
  for (size_t i = 0; i < order.size(); ++i) y[i] = data.y[order[i]];
}

// Mean loss and accuracy of the model over a whole dataset, in chunks to bound memory.
ml::Model::Eval EvaluateAll(ml::Model& model, const ml::Dataset& data) {
  constexpr Eigen::Index kChunk = 1000;
  ml::Model::Eval total;
  ml::Matrix x;
  for (Eigen::Index start = 0; start < static_cast<Eigen::Index>(data.size()); start += kChunk) {
    const Eigen::Index n = std::min(kChunk, static_cast<Eigen::Index>(data.size()) - start);
    data.RowRange(static_cast<size_t>(start), static_cast<size_t>(n), x);
    const auto e = model.Evaluate(x, std::span(data.y).subspan(start, n));
    total.loss_sum += e.loss_sum;
    total.correct += e.correct;
    total.count += e.count;
  }
  return total;
}

// sum / n, or nothing when there was nothing to measure.
std::optional<double> MeanOf(double sum, uint64_t n) {
  if (n == 0) return std::nullopt;
  return sum / double(n);
}

nlohmann::json OrNull(const std::optional<double>& v) {
  return v ? nlohmann::json(*v) : nlohmann::json(nullptr);
}

// The end-of-epoch progress text; what was not measured is left out.
std::string EpochSummary(const EpochResult& r) {
  std::string text = fmt::format("loss {:.4f}", r.train_loss);
  if (r.val_loss) text += fmt::format(" val_loss {:.4f}", *r.val_loss);
  if (r.test_accuracy) text += fmt::format(" test_acc {:.4f}", *r.test_accuracy);
  return text + fmt::format(" lr {:.3g} {:.1f}s", r.lr, r.wall_seconds);
}

}  // namespace

Result<std::unique_ptr<Trainer>> Trainer::Create(TrainConfig config) {
  config.ResolveDefaults();
  P2P_RETURN_IF_ERROR(config.lr_schedule.Validate(config.epochs));
  // Before the data is loaded: a checkpoint directory that cannot take the first epoch's
  // checkpoint, or would lose one, is refused now rather than after an epoch of work.
  P2P_RETURN_IF_ERROR(CheckCheckpointDir(config.checkpoint_dir, config.resume, config.overwrite));
  P2P_ASSIGN_OR_RETURN(ml::Splits data, LoadTrainingData(config));
  config.model.input = data.train.shape;
  config.model.num_classes = data.train.num_classes;
  config.model.seed = config.seed;
  P2P_ASSIGN_OR_RETURN(config.model.loss, ml::ParseLoss(config.loss));
  P2P_RETURN_IF_ERROR(CheckModelFitsMemory(config.model, config.optimizer, AvailableMemoryBytes()));
  P2P_ASSIGN_OR_RETURN(std::unique_ptr<ml::Model> model, ml::Model::Create(config.model));
  P2P_ASSIGN_OR_RETURN(std::unique_ptr<ml::Optimizer> optimizer,
                       ml::Optimizer::Create(config.optimizer));
  P2P_ASSIGN_OR_RETURN(MetricsWriter metrics,
                       MetricsWriter::Open(config.metrics_path, /*append=*/config.resume));
  std::unique_ptr<Trainer> trainer(new Trainer(std::move(config), std::move(data), std::move(model),
                                               std::move(optimizer), std::move(metrics)));
  P2P_RETURN_IF_ERROR(trainer->MaybeResume());
  return trainer;
}

Trainer::Trainer(TrainConfig config, ml::Splits data, std::unique_ptr<ml::Model> model,
                 std::unique_ptr<ml::Optimizer> optimizer, MetricsWriter metrics)
    : config_(std::move(config)),
      data_(std::move(data)),
      model_(std::move(model)),
      optimizer_(std::move(optimizer)),
      schedule_(config_.lr_schedule, config_.optimizer.lr, config_.size, config_.epochs),
      early_stopping_({config_.early_stopping_patience, 0.0}),
      metrics_(std::move(metrics)),
      progress_(Progress::ParseMode(config_.progress)) {
  model_->Init(config_.seed);
}

Status Trainer::MaybeResume() {
  if (!config_.resume) return Status::Ok();
  if (config_.checkpoint_dir.empty()) return InvalidArgument("--resume needs --checkpoint-dir");
  auto loaded = LoadCheckpoint(config_.checkpoint_dir);
  if (!loaded.ok() && loaded.status().code() == StatusCode::kNotFound) {
    spdlog::info("no checkpoint in {}; starting from epoch 1", config_.checkpoint_dir);
    return Status::Ok();
  }
  if (!loaded.ok()) return loaded.status();
  return Adopt(*loaded, "checkpoint in " + config_.checkpoint_dir);
}

Status Trainer::Adopt(const Checkpoint& c, const std::string& source) {
  if (c.config != config_.Fingerprint() || c.params.size() != model_->NumParams()) {
    return InvalidArgument(
        "{} was written by a different configuration ({}) than this run ({}); "
        "use the same flags or another --checkpoint-dir",
        source, c.config, config_.Fingerprint());
  }
  if (c.model_buffers.size() != model_->NumBuffers()) {
    return DataLoss(
        "{} holds {} BatchNorm buffer values but model {} has {} (written by a "
        "p2ptrain that did not save them?); start over with --overwrite",
        source, c.model_buffers.size(), c.model, model_->NumBuffers());
  }
  std::copy(c.params.begin(), c.params.end(), model_->Params().begin());
  std::copy(c.model_buffers.begin(), c.model_buffers.end(), model_->Buffers().begin());
  P2P_RETURN_IF_ERROR(optimizer_->LoadState(c.optimizer));
  plateau_.set_state(c.plateau);
  early_stopping_.set_state(c.early_stopping);
  first_epoch_ = c.epoch + 1;
  if (restore_sync_state_) {
    P2P_RETURN_IF_ERROR(restore_sync_state_(c.sync_state));
  } else {
    resumed_sync_state_ = c.sync_state;
  }
  spdlog::info("continuing from the {} after epoch {}", source, c.epoch);
  return Status::Ok();
}

Result<EpochResult> Trainer::Run() {
  EpochResult last;
  last.epoch = first_epoch_ - 1;
  for (int epoch = first_epoch_; epoch <= config_.epochs; ++epoch) {
    P2P_ASSIGN_OR_RETURN(last, RunEpoch(epoch));
    if (last.early_stop) {
      spdlog::info("early stopping after epoch {}: validation loss has not improved for {} epochs",
                   epoch, config_.early_stopping_patience);
      break;
    }
    if (between_epochs_ && epoch < config_.epochs) P2P_RETURN_IF_ERROR(between_epochs_(epoch));
  }
  return last;
}

int64_t Trainer::local_steps() const {
  const size_t batch = static_cast<size_t>(config_.batch_size);
  return static_cast<int64_t>((data_.train.size() + batch - 1) / batch);
}

void Trainer::set_epoch_hook(EpochHook hook) {
  epoch_hook_ = std::move(hook);
  if (config_.evaluation_slice) return;  // loaded as this peer's slices already
  // Contiguous slice `rank` of `size`: together the peers evaluate every sample exactly once.
  auto slice = [&](const ml::Dataset& d) {
    const size_t n = d.size(), size = static_cast<size_t>(config_.size);
    const size_t r = static_cast<size_t>(config_.rank);
    std::vector<size_t> rows;
    for (size_t i = n * r / size; i < n * (r + 1) / size; ++i) rows.push_back(i);
    return d.Subset(rows);
  };
  data_.validation = slice(data_.validation);
  data_.test = slice(data_.test);
  config_.evaluation_slice = true;
}

Result<EpochResult> Trainer::RunEpoch(int epoch) {
  EpochResult r;
  r.epoch = epoch;
  const auto start = Clock::now();
  if (const auto lr = schedule_.LrFor(epoch)) optimizer_->set_lr(*lr);
  sync::EpochTotals totals;
  rollback_.valid = false;
  for (int64_t first_round = 0;;) {
    P2P_RETURN_IF_ERROR(TrainOneEpoch(epoch, r, totals, first_round));
    P2P_ASSIGN_OR_RETURN(const RoundOutcome outcome, Evaluate(epoch, r, totals));
    if (outcome == RoundOutcome::kApply) break;
    // The epoch's last round must be redone by the survivors of a view change.
    P2P_CHECK(rollback_.valid, "a redo of epoch {}'s last round without its rollback state", epoch);
    first_round = rollback_.round;
    RestoreRollback(r, totals);
  }
  r.wall_seconds = Since(start);
  P2P_RETURN_IF_ERROR(SaveCheckpointAfter(epoch));
  P2P_RETURN_IF_ERROR(WriteMetrics(r));
  progress_.End(EpochSummary(r));
  return r;
}

// One epoch of minibatches in rounds of `sync_every` batches. A round's gradient is the mean over
// its samples; with sync_every 1 it is the model's own gradient buffer (no copy), otherwise the
// sample-weighted sum of the round's batches is accumulated and divided once at the end.
Status Trainer::TrainOneEpoch(int epoch, EpochResult& r, sync::EpochTotals& totals,
                              int64_t first_round) {
  const ml::Dataset& train = data_.train;
  // Each epoch's order depends only on (seed, rank, epoch), so a resumed run sees the same batches.
  // (SeededPermutation mixes its seed, so neighbouring values give unrelated orders.)
  const uint64_t epoch_seed = config_.seed ^ ((uint64_t(config_.rank) << 32) | uint64_t(epoch));
  const auto order = ml::SeededPermutation(train.size(), epoch_seed);
  const size_t batch = static_cast<size_t>(config_.batch_size);
  const int64_t steps = steps_per_epoch_ > 0 ? steps_per_epoch_ : local_steps();
  const int64_t per_round =
      config_.sync_every > 0 ? config_.sync_every : std::max<int64_t>(steps, 1);
  const bool accumulate = per_round > 1;
  if (accumulate) accumulated_.assign(model_->NumParams(), 0.0f);
  if (first_round == 0) progress_.Begin(fmt::format("epoch {}/{}", epoch, config_.epochs), steps);
  for (int64_t first = first_round * per_round; first < steps; first += per_round) {
    // The safe point for SIGINT/SIGTERM: between rounds, so no peer sees half a round of ours.
    if (StopSignal() != 0) {
      return StoppedBySignal(fmt::format("in epoch {} before round {} of {}", epoch,
                                         first / per_round + 1,
                                         (steps + per_round - 1) / per_round));
    }
    std::vector<std::span<const size_t>> batches;  // rows of each step; empty when out of data
    for (int64_t step = first; step < std::min(first + per_round, steps); ++step) {
      const size_t begin = std::min(static_cast<size_t>(step) * batch, train.size());
      batches.push_back(std::span(order).subspan(begin, std::min(batch, train.size() - begin)));
    }
    std::span<float> grad = accumulate ? std::span<float>(accumulated_) : model_->MutableGrads();
    const sync::EpochTotals before = totals;
    P2P_ASSIGN_OR_RETURN(const int64_t samples, RoundGradient(batches, grad, r, totals));
    P2P_ASSIGN_OR_RETURN(const RoundOutcome outcome,
                         FinishRound({epoch, first / per_round, samples}, grad, r));
    if (outcome == RoundOutcome::kRedoPreviousRound) {
      // Undo the previous round and continue from it (the loop's increment moves to it).
      P2P_CHECK(rollback_.valid && rollback_.round == first / per_round - 1,
                "a redo of round {} without its rollback state", first / per_round - 1);
      RestoreRollback(r, totals);
      first -= 2 * per_round;
      continue;
    }
    if (keep_rollback_) rollback_.totals = before;
    const int64_t done = std::min(first + per_round, steps);
    progress_.Update(
        done, fmt::format("loss {:.4f}", totals.train_samples > 0
                                             ? totals.train_loss_sum / double(totals.train_samples)
                                             : 0.0));
  }
  r.samples = static_cast<int64_t>(totals.train_samples);
  r.samples_per_second = r.compute_seconds > 0 ? double(r.samples) / r.compute_seconds : 0.0;
  return Status::Ok();
}

Result<int64_t> Trainer::RoundGradient(const std::vector<std::span<const size_t>>& batches,
                                       std::span<float> grad, EpochResult& r,
                                       sync::EpochTotals& totals) {
  const ml::Dataset& train = data_.train;
  int64_t samples = 0;
  for (const auto& rows : batches) samples += static_cast<int64_t>(rows.size());
  totals.train_samples += static_cast<uint64_t>(samples);
  const auto t = Clock::now();
  if (samples == 0) {  // an exhausted shard contributes nothing to this round
    std::fill(grad.begin(), grad.end(), 0.0f);
  } else if (offload_) {
    std::vector<GradientPart> parts;
    for (const auto& rows : batches) {
      const size_t k = batches.size() == 1 ? static_cast<size_t>(parts_per_batch_) : 1;
      for (size_t i = 0; i < k; ++i) {  // contiguous, near-equal slices of the minibatch
        const auto slice =
            rows.subspan(rows.size() * i / k, rows.size() * (i + 1) / k - rows.size() * i / k);
        if (slice.empty()) continue;
        GradientPart& part = parts.emplace_back();
        GatherBatch(train, slice, part.x, part.y);
      }
    }
    P2P_ASSIGN_OR_RETURN(const double loss_sum, offload_(parts, model_->Params(), grad));
    totals.train_loss_sum += loss_sum;
  } else {
    ml::Matrix x;
    std::vector<int32_t> y;
    const bool accumulate = grad.data() != model_->MutableGrads().data();
    if (accumulate) std::fill(grad.begin(), grad.end(), 0.0f);
    ml::VectorMap acc(grad.data(), static_cast<Eigen::Index>(grad.size()));
    for (const auto& rows : batches) {
      if (rows.empty()) continue;
      GatherBatch(train, rows, x, y);
      const float loss = model_->ComputeGradient(x, y);
      totals.train_loss_sum += double(loss) * double(rows.size());
      if (!accumulate) continue;
      const auto g = model_->Grads();
      acc += ml::ConstVectorMap(g.data(), static_cast<Eigen::Index>(g.size())) *
             static_cast<float>(rows.size());
    }
    if (accumulate) acc /= static_cast<float>(samples);
  }
  r.compute_seconds += Since(t);
  return samples;
}

// Combines the round's gradient with the other peers' (if any) and applies it.
Result<RoundOutcome> Trainer::FinishRound(const StepInfo& info, std::span<float> grad,
                                          EpochResult& r) {
  ++r.rounds;
  if (hook_) {
    const auto t = Clock::now();
    P2P_ASSIGN_OR_RETURN(const RoundOutcome outcome, hook_(info, grad));
    r.hook_seconds += Since(t);
    if (outcome != RoundOutcome::kApply) return outcome;
  } else if (info.samples == 0) {
    return RoundOutcome::kApply;  // alone and out of data: nothing to apply
  }
  const auto t = Clock::now();
  if (keep_rollback_) {
    rollback_.valid = true;
    rollback_.round = info.round;
    rollback_.params.assign(model_->Params().begin(), model_->Params().end());
    rollback_.optimizer = optimizer_->SaveState();
    rollback_.rounds = r.rounds - 1;
  }
  if (update_hook_) {
    P2P_RETURN_IF_ERROR(update_hook_(model_->Params(), grad, *optimizer_));
  } else {
    optimizer_->Step(model_->Params(), grad);
  }
  r.update_seconds += Since(t);
  return RoundOutcome::kApply;
}

void Trainer::RestoreRollback(EpochResult& r, sync::EpochTotals& totals) {
  std::copy(rollback_.params.begin(), rollback_.params.end(), model_->Params().begin());
  Status s = optimizer_->LoadState(rollback_.optimizer);
  P2P_CHECK(s.ok(), "restoring the optimizer's own state: {}", s.ToString());
  totals = rollback_.totals;
  r.rounds = rollback_.rounds;
  rollback_.valid = false;
  spdlog::info("rolled back round {} of this epoch to redo it with the new view", rollback_.round);
}

Result<RoundOutcome> Trainer::Evaluate(int epoch, EpochResult& r, sync::EpochTotals& totals) {
  const auto t = Clock::now();
  if (config_.evaluation) {
    const auto val = EvaluateAll(*model_, data_.validation);
    const auto test = EvaluateAll(*model_, data_.test);
    totals.val_loss_sum = val.loss_sum;
    totals.val_samples = static_cast<uint64_t>(val.count);
    totals.test_correct = static_cast<uint64_t>(test.correct);
    totals.test_samples = static_cast<uint64_t>(test.count);
  }
  totals.param_hash = HashFloats(model_->Params());
  totals.buffers.assign(model_->Buffers().begin(), model_->Buffers().end());
  if (epoch_hook_) {
    P2P_ASSIGN_OR_RETURN(const RoundOutcome outcome, epoch_hook_(epoch, totals));
    if (outcome != RoundOutcome::kApply) return outcome;
  }
  // Training updated each peer's BatchNorm running statistics from its own batches; every peer
  // now adopts their sample-weighted mean over the peers (alone: its own), so all hold one model.
  P2P_CHECK(totals.buffers.size() == model_->NumBuffers(), "epoch hook returned {} buffers, not {}",
            totals.buffers.size(), model_->NumBuffers());
  std::copy(totals.buffers.begin(), totals.buffers.end(), model_->Buffers().begin());
  r.eval_seconds = Since(t);
  r.param_hash = ModelHash(*model_);
  r.train_loss =
      totals.train_samples > 0 ? totals.train_loss_sum / double(totals.train_samples) : 0.0;
  r.val_loss = MeanOf(totals.val_loss_sum, totals.val_samples);
  r.test_accuracy = MeanOf(double(totals.test_correct), totals.test_samples);
  r.lr = optimizer_->lr();
  if (!r.val_loss) return RoundOutcome::kApply;  // no validation signal for the schedules
  if (config_.lr_plateau && schedule_.PlateauAfter(epoch)) plateau_.Step(*r.val_loss, *optimizer_);
  if (config_.early_stopping) r.early_stop = early_stopping_.ShouldStop(*r.val_loss);
  return RoundOutcome::kApply;
}

Checkpoint Trainer::Snapshot(int epoch) const {
  Checkpoint c;
  c.epoch = epoch;
  c.model = config_.model.name;
  c.config = config_.Fingerprint();
  c.params.assign(model_->Params().begin(), model_->Params().end());
  c.model_buffers.assign(model_->Buffers().begin(), model_->Buffers().end());
  c.optimizer = optimizer_->SaveState();
  c.plateau = plateau_.state();
  c.early_stopping = early_stopping_.state();
  if (save_sync_state_) c.sync_state = save_sync_state_();
  return c;
}

Status Trainer::SaveCheckpointAfter(int epoch) {
  if (config_.checkpoint_dir.empty()) return Status::Ok();
  return SaveCheckpoint(config_.checkpoint_dir, Snapshot(epoch));
}

Status Trainer::set_sync_state(std::function<SyncState()> save,
                               const std::function<Status(SyncState)>& restore) {
  save_sync_state_ = std::move(save);
  restore_sync_state_ = restore;
  Status s = restore(std::move(resumed_sync_state_));
  resumed_sync_state_.clear();
  if (!s.ok()) {
    return s.Annotate(
        fmt::format("resuming the sync state from {}", CheckpointPath(config_.checkpoint_dir)));
  }
  return s;
}

Status Trainer::WriteMetrics(const EpochResult& r) {
  nlohmann::json record = {{"event", "epoch"},
                           {"rank", config_.rank},
                           {"epoch", r.epoch},
                           {"loss", r.train_loss},
                           {"val_loss", OrNull(r.val_loss)},
                           {"test_accuracy", OrNull(r.test_accuracy)},
                           {"lr", r.lr},
                           {"compute_s", r.compute_seconds},
                           {"sync_s", r.hook_seconds},
                           {"update_s", r.update_seconds},
                           {"eval_s", r.eval_seconds},
                           {"epoch_s", r.wall_seconds},
                           {"samples", r.samples},
                           {"rounds", r.rounds},
                           {"samples_per_s", r.samples_per_second},
                           {"peak_rss_mb", PeakRssMb()},
                           {"cpu_s", CpuSeconds()},
                           {"param_hash", r.param_hash},
                           {"early_stop", r.early_stop}};
  for (const auto& extra : metrics_extra_) record.update(extra(r.epoch));
  return metrics_.Write(record);
}

}  // namespace p2p::peer
