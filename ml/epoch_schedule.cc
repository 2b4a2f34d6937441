#include "ml/epoch_schedule.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>
#include <numbers>

namespace p2p::ml {
namespace {

bool IsOneOf(const std::string& s, const std::vector<std::string>& names) {
  return std::find(names.begin(), names.end(), s) != names.end();
}

double ScaleFactor(const std::string& scale, int peers) {
  if (scale == "linear") return peers;
  if (scale == "sqrt") return std::sqrt(double(peers));
  return 1.0;
}

}  // namespace

std::vector<std::string> ScheduleNames() { return {"plateau", "step", "multistep", "cosine"}; }

Status EpochScheduleOptions::Validate(int epochs) const {
  if (!IsOneOf(schedule, ScheduleNames())) {
    return InvalidArgument("--lr-schedule {}: expected plateau, step, multistep or cosine",
                           schedule);
  }
  if (!IsOneOf(scale, {"none", "linear", "sqrt"})) {
    return InvalidArgument("--lr-scale {}: expected none, linear or sqrt", scale);
  }
  if (warmup_epochs < 0 || warmup_epochs >= std::max(epochs, 1)) {
    return InvalidArgument("--warmup-epochs {} must be >= 0 and below --epochs {}", warmup_epochs,
                           epochs);
  }
  if (step_size < 1) return InvalidArgument("--lr-step-size {} must be >= 1", step_size);
  if (!(gamma > 0.0f && gamma <= 1.0f)) {
    return InvalidArgument("--lr-gamma {} must be in (0, 1]", gamma);
  }
  if (!(min_lr >= 0.0f && std::isfinite(min_lr))) {
    return InvalidArgument("--lr-min {} must be >= 0", min_lr);
  }
  if (schedule == "multistep" && milestones.empty()) {
    return InvalidArgument("--lr-schedule multistep needs --lr-milestones, e.g. 30,60,80");
  }
  for (size_t i = 0; i < milestones.size(); ++i) {
    if (milestones[i] < 1 || (i > 0 && milestones[i] <= milestones[i - 1])) {
      return InvalidArgument("--lr-milestones {} must be positive and strictly increasing",
                             fmt::join(milestones, ","));
    }
  }
  return Status::Ok();
}

std::string EpochScheduleOptions::ToString() const {
  return fmt::format("{} warmup={} scale={} step={} milestones={} gamma={} min_lr={}", schedule,
                     warmup_epochs, scale, step_size, fmt::join(milestones, ":"), gamma, min_lr);
}

EpochSchedule::EpochSchedule(EpochScheduleOptions options, float lr, int peers, int epochs)
    : options_(std::move(options)),
      base_(static_cast<float>(lr * ScaleFactor(options_.scale, peers))),
      epochs_(epochs) {
  const Status s = options_.Validate(epochs);
  P2P_CHECK(s.ok(), "{}", s.message());
}

std::optional<float> EpochSchedule::LrFor(int epoch) const {
  const int w = options_.warmup_epochs;
  // Computed in double from the epoch alone, then rounded once: no state, so a resumed run and
  // every peer get the same float.
  const double base = base_;
  if (epoch <= w) return static_cast<float>(base * epoch / (w + 1));
  const int j = epoch - 1;  // completed epochs, as PyTorch's scheduler counts them
  const std::string& s = options_.schedule;
  if (s == "plateau") {
    // The first epoch after warmup starts ReduceLROnPlateau from the base (unscaled and without
    // warmup that is --lr itself, bit for bit); later epochs keep what it set.
    if (epoch == w + 1) return base_;
    return std::nullopt;
  }
  if (s == "step") {
    return static_cast<float>(base * std::pow(double(options_.gamma), j / options_.step_size));
  }
  if (s == "multistep") {
    const auto passed =
        std::upper_bound(options_.milestones.begin(), options_.milestones.end(), j) -
        options_.milestones.begin();
    return static_cast<float>(base * std::pow(double(options_.gamma), double(passed)));
  }
  // cosine over the epochs after warmup
  const double t = double(j - w) / double(epochs_ - w);
  const double min = options_.min_lr;
  return static_cast<float>(min + (base - min) * (1.0 + std::cos(std::numbers::pi * t)) / 2.0);
}

bool EpochSchedule::PlateauAfter(int epoch) const {
  return options_.schedule == "plateau" && epoch > options_.warmup_epochs;
}

}  // namespace p2p::ml
