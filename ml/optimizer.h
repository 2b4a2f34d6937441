// Optimizers over one flat parameter buffer, plus the study's LR schedule and early stopping.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "common/status.h"

namespace p2p::ml {

struct OptimizerOptions {
  std::string name = "sgd";  // sgd | adam | adamw | rmsprop | adagrad
  float lr = 0.01f;
  float momentum = 0.0f;               // sgd, rmsprop
  bool nesterov = false;               // sgd (requires momentum > 0)
  float weight_decay = 0.0f;           // L2 added to the gradient; decoupled for adamw
  float beta1 = 0.9f, beta2 = 0.999f;  // adam, adamw
  // eps: adam, adamw, rmsprop. adagrad always uses torch's default, 1e-10.
  float eps = 1e-8f;
  float alpha = 0.99f;  // rmsprop smoothing
};

// Semantics follow torch.optim so the study's settings mean the same thing here (same formulas
// and order of operations; float rounding may differ from torch in the last bit).
// Not thread-safe. State is sized lazily on the first Step to the parameter count.
class Optimizer {
 public:
  virtual ~Optimizer() = default;
  // Validates names and ranges; an unknown name is kInvalidArgument listing the valid names.
  // lr must be > 0; weight_decay, momentum, eps, alpha >= 0; betas in [0, 1); nesterov needs sgd
  // with momentum > 0; momentum on an optimizer that has none (adam, adamw, adagrad) is an error.
  static Result<std::unique_ptr<Optimizer>> Create(const OptimizerOptions& options);
  static std::vector<std::string> Names();

  // params -= update(grads). Sizes must match each other and any earlier step (P2P_CHECK); the
  // spans must not overlap.
  virtual void Step(std::span<float> params, std::span<const float> grads) = 0;

  float lr() const { return lr_; }
  void set_lr(float lr) { lr_ = lr; }

  // Everything needed to resume bit-exactly (step count, moment buffers), as flat floats/ints.
  // buffers, each of the parameter count (none before the first step):
  //   sgd: [momentum_buffer] if momentum > 0;  adam, adamw: [exp_avg, exp_avg_sq];
  //   rmsprop: [square_avg] + [momentum_buffer] if momentum > 0;  adagrad: [sum].
  struct State {
    int64_t step = 0;
    float lr = 0;
    std::vector<std::vector<float>> buffers;
  };
  virtual State SaveState() const = 0;
  // kInvalidArgument (state unchanged) on a wrong buffer count, unequal buffer sizes, a size other
  // than the one earlier steps used, step < 0 or lr <= 0.
  virtual Status LoadState(const State& state) = 0;

 protected:
  float lr_ = 0.01f;
};

// torch.optim.lr_scheduler.ReduceLROnPlateau(mode="min", factor, patience, min_lr), threshold 1e-4
// relative, cooldown 0, eps 1e-8, as in PyTorch. Step() with the epoch's validation loss; returns
// the new lr. A NaN loss counts as a bad epoch.
class ReduceLrOnPlateau {
 public:
  struct Options {
    float factor = 0.1f;
    int patience = 5;
    float min_lr = 1e-6f;
    float threshold = 1e-4f;
    // kInvalidArgument naming the field unless 0 < factor < 1, patience >= 0, min_lr >= 0,
    // threshold >= 0.
    Status Validate() const;
  };
  ReduceLrOnPlateau() : ReduceLrOnPlateau(Options{}) {}
  explicit ReduceLrOnPlateau(Options options);  // P2P_CHECKs options.Validate()
  float Step(double val_loss, Optimizer& optimizer);
  struct State {
    double best = 0;
    int bad_epochs = 0;
    bool has_best = false;
  };
  State state() const { return state_; }
  void set_state(State s) { state_ = s; }

 private:
  Options options_;
  State state_;
};

// The study's early stopping: best set on the first epoch; if val - best < min_delta the best is
// updated and the counter reset, else the counter grows; stop when counter >= patience.
// So an equal loss counts as bad, and with min_delta > 0 a loss up to min_delta *worse* than the
// best still resets the counter and becomes the new best (the study's rule, kept as is).
class EarlyStopping {
 public:
  struct Options {
    int patience = 10;
    double min_delta = 0.0;
    // kInvalidArgument naming the field unless patience >= 1 and min_delta >= 0.
    Status Validate() const;
  };
  EarlyStopping() : EarlyStopping(Options{}) {}
  explicit EarlyStopping(Options options);  // P2P_CHECKs options.Validate()
  bool ShouldStop(double val_loss);         // call once per epoch
  struct State {
    double best = 0;
    int counter = 0;
    bool has_best = false;
  };
  State state() const { return state_; }
  void set_state(State s) { state_ = s; }

 private:
  Options options_;
  State state_;
};

}  // namespace p2p::ml
