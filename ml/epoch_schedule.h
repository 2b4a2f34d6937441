// Epoch learning-rate schedules as a PyTorch user writes them (StepLR, MultiStepLR,
// CosineAnnealingLR, stepped once per epoch), with linear warmup and the learning-rate scaling
// rules for data-parallel training. ReduceLROnPlateau (ml/optimizer.h) stays the default.
//
// The learning rate of epoch e (1-based) is a pure function of the options, e and the number of
// peers, so every peer computes the same value without talking to the others; the options are
// part of the run's fingerprint (peer/train_config.cc), which the peers agree on at start.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "common/status.h"

namespace p2p::ml {

struct EpochScheduleOptions {
  std::string schedule = "plateau";  // plateau | step | multistep | cosine
  int warmup_epochs = 0;
  std::string scale = "none";   // none | linear | sqrt: the lr times 1, W or sqrt(W) for W peers
  int step_size = 30;           // step: multiply by gamma every step_size epochs
  std::vector<int> milestones;  // multistep: multiply by gamma at each (epoch count, ascending)
  float gamma = 0.1f;           // step, multistep
  float min_lr = 0.0f;          // cosine: eta_min

  // kInvalidArgument naming the flag: unknown schedule or scale, warmup < 0 or >= epochs,
  // step_size < 1, milestones not strictly increasing positive or missing for multistep,
  // gamma not in (0, 1], min_lr < 0.
  Status Validate(int epochs) const;
  std::string ToString() const;  // for the fingerprint: every field that changes the lr
};

std::vector<std::string> ScheduleNames();

class EpochSchedule {
 public:
  // `lr` the --lr, `peers` the number W of peers (1 alone), `epochs` the planned epochs.
  // P2P_CHECKs options.Validate(epochs).
  EpochSchedule(EpochScheduleOptions options, float lr, int peers, int epochs);

  // The scaled base learning rate: lr, lr*W or lr*sqrt(W).
  float base_lr() const { return base_; }
  // The learning rate epoch `epoch` (1-based) trains with, or nullopt where ReduceLROnPlateau
  // decides (schedule plateau, after warmup and after its first epoch, which sets base_lr()).
  //   warmup, e <= w:  base * e / (w + 1)
  //   step:            base * gamma^floor((e-1) / step_size)
  //   multistep:       base * gamma^(number of milestones <= e-1)
  //   cosine:          min + (base - min) * (1 + cos(pi * (e-1-w) / (epochs-w))) / 2
  // (step and multistep count epochs from the start, as MultiStepLR's milestones do; cosine
  // anneals over the epochs after warmup.)
  std::optional<float> LrFor(int epoch) const;
  // Whether ReduceLROnPlateau acts after `epoch` (plateau schedule, warmup over).
  bool PlateauAfter(int epoch) const;

 private:
  EpochScheduleOptions options_;
  float base_;
  int epochs_;
};

}  // namespace p2p::ml
