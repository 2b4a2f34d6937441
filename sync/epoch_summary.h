// End-of-epoch exchange: every peer contributes the totals it measured on its part of the data
// (training loss, its slice of the validation and test sets) and the hash of its parameters; every
// peer gets the run-wide totals, summed in rank order so all peers compute identical numbers.
//
// Identical numbers matter: ReduceLROnPlateau and early stopping act on the validation loss, and
// peers that disagreed about it would change learning rate or stop at different epochs and then
// deadlock. The hash check catches divergence one epoch after it happens, with a clear error.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "broker/transport.h"
#include "common/status.h"
#include "sync/mailbox.h"

namespace p2p::sync {

struct EpochTotals {
  double train_loss_sum = 0;  // sum over samples of the per-sample training loss
  uint64_t train_samples = 0;
  double val_loss_sum = 0;
  uint64_t val_samples = 0;
  uint64_t test_correct = 0;
  uint64_t test_samples = 0;
  std::string param_hash;  // HashFloats of the parameters after the epoch (16 hex digits)
  // The model's BatchNorm running statistics (ml::Model::Buffers()); empty for models without
  // them. Sent: this peer's own. Returned by ExchangeEpochTotals: their mean over the ranks,
  // weighted by each rank's train_samples, so every peer adopts the same buffers.
  std::vector<float> buffers;
  // Restarted ranks asking to rejoin (ascending; docs/membership.md, "Rejoining"). Sent: the
  // requests this peer holds. Returned by ExchangeEpochTotals: the union over the members, so
  // every member admits the same ranks after the epoch.
  std::vector<int> joiners;
};

// Body layout (little-endian): f64 train_loss_sum | u64 train_samples | f64 val_loss_sum |
// u64 val_samples | u64 test_correct | u64 test_samples | 16 bytes param_hash (ASCII hex)
// [| f32 buffers...] (present only for a model with buffers; the count is the model's, which
// every peer knows, so it is not sent) [| u32 n | n x u32 joiner rank, ascending] (present only
// when there are joiners, so a run without them sends what it always did).
inline constexpr uint32_t kMaxJoinerRank = 1024;
broker::Bytes EncodeEpochTotals(const EpochTotals& totals);
// DataLoss for a body of the wrong length (for `num_buffers` buffers and the joiner count it
// states), a non-hex hash, non-finite sums or buffers, correct > samples, or joiner ranks that are
// not strictly ascending below kMaxJoinerRank.
Result<EpochTotals> DecodeEpochTotals(std::span<const std::byte> body, size_t num_buffers = 0);
// The mean of the members' buffers weighted by their train_samples (equal weights if no member
// trained), accumulated in double in the order given: the same inputs give the same bits on
// every peer.
std::vector<float> WeightedMeanBuffers(const std::vector<const EpochTotals*>& members);

// Broadcasts `mine` for `epoch` and returns the sum over all ranks (param_hash: the common hash;
// buffers: WeightedMeanBuffers over the ranks in rank order; joiners: the union of the members'
// that are ranks of the run outside the view).
// Internal error naming the ranks and hashes if parameters diverged; Timeout naming missing ranks.
Result<EpochTotals> ExchangeEpochTotals(Mailbox& mailbox, uint64_t epoch, const EpochTotals& mine,
                                        broker::Deadline deadline);

}  // namespace p2p::sync
