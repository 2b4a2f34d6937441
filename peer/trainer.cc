#include "peer/trainer.h"

#include <spdlog/spdlog.h>

#include <chrono>
#include <filesystem>

#include "common/hash.h"
#include "peer/checkpoint.h"
#include "peer/data_loading.h"
#include "peer/system_stats.h"

namespace p2p::peer {
namespace {

using Clock = std::chrono::steady_clock;
double Since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// Rows `order[begin, end)` of `data` gathered into a batch.
void GatherBatch(const ml::Dataset& data, std::span<const size_t> order, ml::Matrix& x,
                 std::vector<int32_t>& y) {
  x.resize(static_cast<Eigen::Index>(order.size()), data.x.cols());
  y.resize(order.size());
  for (size_t i = 0; i < order.size(); ++i) {
    x.row(static_cast<Eigen::Index>(i)) = data.x.row(static_cast<Eigen::Index>(order[i]));
    y[i] = data.y[order[i]];
  }
}

// Mean loss and accuracy of the model over a whole dataset, in chunks to bound memory.
ml::Model::Eval EvaluateAll(ml::Model& model, const ml::Dataset& data) {
  constexpr Eigen::Index kChunk = 1000;
  ml::Model::Eval total;
  ml::Matrix x;
  for (Eigen::Index start = 0; start < static_cast<Eigen::Index>(data.size()); start += kChunk) {
    const Eigen::Index n = std::min(kChunk, static_cast<Eigen::Index>(data.size()) - start);
    x = data.x.middleRows(start, n);
    const auto e = model.Evaluate(x, std::span(data.y).subspan(start, n));
    total.loss_sum += e.loss_sum;
    total.correct += e.correct;
    total.count += e.count;
  }
  return total;
}

}  // namespace

Result<std::unique_ptr<Trainer>> Trainer::Create(TrainConfig config) {
  config.ResolveDefaults();
  P2P_ASSIGN_OR_RETURN(ml::Splits data, LoadTrainingData(config));
  config.model.input = data.train.shape;
  config.model.num_classes = data.train.num_classes;
  config.model.seed = config.seed;
  P2P_ASSIGN_OR_RETURN(config.model.loss, ml::ParseLoss(config.loss));
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
  const Checkpoint& c = *loaded;
  if (c.config != config_.Fingerprint() || c.params.size() != model_->NumParams()) {
    return InvalidArgument(
        "checkpoint in {} was written by a different configuration ({}) than this run ({}); "
        "use the same flags or another --checkpoint-dir",
        config_.checkpoint_dir, c.config, config_.Fingerprint());
  }
  std::copy(c.params.begin(), c.params.end(), model_->Params().begin());
  P2P_RETURN_IF_ERROR(optimizer_->LoadState(c.optimizer));
  plateau_.set_state(c.plateau);
  early_stopping_.set_state(c.early_stopping);
  first_epoch_ = c.epoch + 1;
  spdlog::info("resumed from {} after epoch {}", CheckpointPath(config_.checkpoint_dir), c.epoch);
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
  }
  return last;
}

Result<EpochResult> Trainer::RunEpoch(int epoch) {
  EpochResult r;
  r.epoch = epoch;
  const auto start = Clock::now();
  P2P_RETURN_IF_ERROR(TrainOneEpoch(epoch, r));
  Evaluate(r);
  r.wall_seconds = Since(start);
  r.param_hash = HashFloats(model_->Params());
  P2P_RETURN_IF_ERROR(SaveCheckpointAfter(epoch));
  P2P_RETURN_IF_ERROR(WriteMetrics(r));
  progress_.End(fmt::format("loss {:.4f} val_loss {:.4f} test_acc {:.4f} lr {:.3g} {:.1f}s",
                            r.train_loss, r.val_loss, r.test_accuracy, r.lr, r.wall_seconds));
  return r;
}

Status Trainer::TrainOneEpoch(int epoch, EpochResult& r) {
  const ml::Dataset& train = data_.train;
  // Each epoch's order depends only on (seed, rank, epoch), so a resumed run sees the same batches.
  // (SeededPermutation mixes its seed, so neighbouring values give unrelated orders.)
  const uint64_t epoch_seed = config_.seed ^ ((uint64_t(config_.rank) << 32) | uint64_t(epoch));
  const auto order = ml::SeededPermutation(train.size(), epoch_seed);
  const size_t batch = static_cast<size_t>(config_.batch_size);
  const int64_t steps = static_cast<int64_t>((train.size() + batch - 1) / batch);
  progress_.Begin(fmt::format("epoch {}/{}", epoch, config_.epochs), steps);
  ml::Matrix x;
  std::vector<int32_t> y;
  double loss_sum = 0;
  for (int64_t step = 0; step < steps; ++step) {
    const size_t begin = static_cast<size_t>(step) * batch;
    const auto rows = std::span(order).subspan(begin, std::min(batch, train.size() - begin));
    GatherBatch(train, rows, x, y);
    auto t = Clock::now();
    loss_sum += model_->ComputeGradient(x, y);
    r.compute_seconds += Since(t);
    if (hook_) {
      t = Clock::now();
      const StepInfo info{epoch, step, static_cast<int64_t>(rows.size())};
      P2P_RETURN_IF_ERROR(hook_(info, model_->MutableGrads()));
      r.hook_seconds += Since(t);
    }
    t = Clock::now();
    optimizer_->Step(model_->Params(), model_->Grads());
    r.update_seconds += Since(t);
    progress_.Update(step + 1, fmt::format("loss {:.4f}", loss_sum / double(step + 1)));
  }
  r.train_loss = steps > 0 ? loss_sum / double(steps) : 0.0;
  r.samples_per_second = r.compute_seconds > 0 ? double(train.size()) / r.compute_seconds : 0.0;
  return Status::Ok();
}

void Trainer::Evaluate(EpochResult& r) {
  r.lr = optimizer_->lr();
  if (!config_.evaluation) return;
  const auto val = EvaluateAll(*model_, data_.validation);
  r.val_loss = val.count > 0 ? val.loss_sum / double(val.count) : 0.0;
  const auto test = EvaluateAll(*model_, data_.test);
  r.test_accuracy = test.count > 0 ? double(test.correct) / double(test.count) : 0.0;
  if (val.count == 0) return;  // no validation data: neither schedule has a signal
  if (config_.lr_plateau) plateau_.Step(r.val_loss, *optimizer_);
  if (config_.early_stopping) r.early_stop = early_stopping_.ShouldStop(r.val_loss);
}

Status Trainer::SaveCheckpointAfter(int epoch) {
  if (config_.checkpoint_dir.empty()) return Status::Ok();
  Checkpoint c;
  c.epoch = epoch;
  c.model = config_.model.name;
  c.config = config_.Fingerprint();
  c.params.assign(model_->Params().begin(), model_->Params().end());
  c.optimizer = optimizer_->SaveState();
  c.plateau = plateau_.state();
  c.early_stopping = early_stopping_.state();
  return SaveCheckpoint(config_.checkpoint_dir, c);
}

Status Trainer::WriteMetrics(const EpochResult& r) {
  return metrics_.Write({{"event", "epoch"},
                         {"rank", config_.rank},
                         {"epoch", r.epoch},
                         {"loss", r.train_loss},
                         {"val_loss", r.val_loss},
                         {"test_accuracy", r.test_accuracy},
                         {"lr", r.lr},
                         {"compute_s", r.compute_seconds},
                         {"sync_s", r.hook_seconds},
                         {"update_s", r.update_seconds},
                         {"epoch_s", r.wall_seconds},
                         {"samples_per_s", r.samples_per_second},
                         {"peak_rss_mb", PeakRssMb()},
                         {"cpu_s", CpuSeconds()},
                         {"param_hash", r.param_hash},
                         {"early_stop", r.early_stop}});
}

}  // namespace p2p::peer
