// The training loop shared by `p2ptrain train` and (with a gradient hook) `p2ptrain peer`.
#pragma once

#include <functional>
#include <memory>
#include <span>

#include "common/status.h"
#include "ml/dataset.h"
#include "ml/model.h"
#include "ml/optimizer.h"
#include "peer/metrics.h"
#include "peer/progress.h"
#include "peer/train_config.h"

namespace p2p::peer {

struct StepInfo {
  int epoch = 0;     // 1-based
  int64_t step = 0;  // 0-based within the epoch
  int64_t samples = 0;
};

// Called after the local gradient of a step is in `grad` and before the optimizer applies it.
// A peer replaces `grad` by the average over all peers here. Returning an error stops training.
using GradientHook = std::function<Status(const StepInfo&, std::span<float> grad)>;

struct EpochResult {
  int epoch = 0;
  double train_loss = 0, val_loss = 0, test_accuracy = 0, lr = 0;
  double compute_seconds = 0, update_seconds = 0, hook_seconds = 0, wall_seconds = 0;
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
  // Trains for the remaining epochs; returns the last epoch's result.
  Result<EpochResult> Run();

  ml::Model& model() { return *model_; }
  const ml::Splits& data() const { return data_; }
  int first_epoch() const { return first_epoch_; }

 private:
  Trainer(TrainConfig config, ml::Splits data, std::unique_ptr<ml::Model> model,
          std::unique_ptr<ml::Optimizer> optimizer, MetricsWriter metrics);
  Status MaybeResume();
  Result<EpochResult> RunEpoch(int epoch);
  Status TrainOneEpoch(int epoch, EpochResult& result);
  void Evaluate(EpochResult& result);
  Status SaveCheckpointAfter(int epoch);
  Status WriteMetrics(const EpochResult& r);

  TrainConfig config_;
  ml::Splits data_;
  std::unique_ptr<ml::Model> model_;
  std::unique_ptr<ml::Optimizer> optimizer_;
  ml::ReduceLrOnPlateau plateau_;
  ml::EarlyStopping early_stopping_;
  MetricsWriter metrics_;
  Progress progress_;
  GradientHook hook_;
  int first_epoch_ = 1;
};

}  // namespace p2p::peer
