// The one line `train` and `peer` print when training ends.
#pragma once

#include <string>

#include "peer/trainer.h"

namespace p2p::peer {

// "final test accuracy: 0.8512 (epoch 2, loss 0.4123, parameters <hash>[, <extra>])", or, when
// no test accuracy was measured, a line that says so instead of printing a zero:
// "finished epoch 2 (loss 0.4123, parameters <hash>[, <extra>]); test accuracy not measured
// (--no-evaluation)". `evaluation` is the run's --evaluation, to name the reason.
std::string FinalSummary(const EpochResult& last, bool evaluation, const std::string& extra = "");

}  // namespace p2p::peer
