// ReduceLrOnPlateau (torch.optim.lr_scheduler.ReduceLROnPlateau, mode "min", threshold_mode
// "rel", cooldown 0) and the study's EarlyStopping rule.
#include <algorithm>
#include <cmath>
#include <limits>

#include "ml/optimizer.h"

namespace p2p::ml {
namespace {

// torch's ReduceLROnPlateau eps: a reduction smaller than this is not applied.
constexpr double kMinLrChange = 1e-8;

bool IsNonNegative(double x) { return x >= 0.0 && std::isfinite(x); }

}  // namespace

Status ReduceLrOnPlateau::Options::Validate() const {
  if (!(factor > 0.0f && factor < 1.0f)) {
    return InvalidArgument("plateau: factor must be in (0, 1), got {}", factor);
  }
  if (patience < 0) return InvalidArgument("plateau: patience must be >= 0, got {}", patience);
  if (!IsNonNegative(min_lr))
    return InvalidArgument("plateau: min_lr must be >= 0, got {}", min_lr);
  if (!IsNonNegative(threshold)) {
    return InvalidArgument("plateau: threshold must be >= 0, got {}", threshold);
  }
  return Status::Ok();
}

ReduceLrOnPlateau::ReduceLrOnPlateau(Options options) : options_(options) {
  const Status s = options_.Validate();
  P2P_CHECK(s.ok(), "{}", s.message());
}

float ReduceLrOnPlateau::Step(double val_loss, Optimizer& optimizer) {
  // Before the first epoch torch's best is +inf, so a NaN first loss is a bad epoch and leaves
  // best unset rather than poisoning every later comparison.
  const double best = state_.has_best ? state_.best : std::numeric_limits<double>::infinity();
  if (val_loss < best * (1.0 - static_cast<double>(options_.threshold))) {
    state_ = {val_loss, 0, true};
  } else {
    ++state_.bad_epochs;
  }
  if (state_.bad_epochs > options_.patience) {
    const double old_lr = optimizer.lr();
    const double new_lr = std::max(old_lr * options_.factor, static_cast<double>(options_.min_lr));
    if (old_lr - new_lr > kMinLrChange) optimizer.set_lr(static_cast<float>(new_lr));
    state_.bad_epochs = 0;  // reset even when min_lr stopped the reduction, as torch does
  }
  return optimizer.lr();
}

Status EarlyStopping::Options::Validate() const {
  if (patience < 1)
    return InvalidArgument("early stopping: patience must be >= 1, got {}", patience);
  if (!IsNonNegative(min_delta)) {
    return InvalidArgument("early stopping: min_delta must be >= 0, got {}", min_delta);
  }
  return Status::Ok();
}

EarlyStopping::EarlyStopping(Options options) : options_(options) {
  const Status s = options_.Validate();
  P2P_CHECK(s.ok(), "{}", s.message());
}

bool EarlyStopping::ShouldStop(double val_loss) {
  if (!state_.has_best) {
    state_ = {val_loss, 0, true};
  } else if (val_loss - state_.best < options_.min_delta) {
    state_.best = val_loss;
    state_.counter = 0;
  } else {
    ++state_.counter;  // includes an equal loss when min_delta == 0, and a NaN loss
  }
  return state_.counter >= options_.patience;
}

}  // namespace p2p::ml
