#include "peer/final_summary.h"

#include <fmt/format.h>

namespace p2p::peer {

std::string FinalSummary(const EpochResult& last, bool evaluation, const std::string& extra) {
  const std::string details = fmt::format("loss {:.4f}, parameters {}{}", last.train_loss,
                                          last.param_hash, extra.empty() ? "" : ", " + extra);
  if (last.test_accuracy) {
    return fmt::format("final test accuracy: {:.4f} (epoch {}, {})", *last.test_accuracy,
                       last.epoch, details);
  }
  // With evaluation on, only an empty test set (a shard whose dataset is not installed here)
  // leaves the accuracy unmeasured.
  return fmt::format("finished epoch {} ({}); test accuracy not measured ({})", last.epoch, details,
                     evaluation ? "no test set" : "--no-evaluation");
}

}  // namespace p2p::peer
