// Bodies of VIEW_PROPOSE and VIEW_INSTALL envelopes (docs/membership.md, docs/wire-format.md).
// The envelope header carries the proposed view id in `epoch` and the coordinator's rank in
// `step`; the bodies are, little-endian:
//   VIEW_PROPOSE: u64 base_view | u64 last_epoch | u64 last_step | u32 n | n x u16 alive ranks
//   VIEW_INSTALL: u64 base_view | u64 resume_epoch | u64 resume_step | u32 n | n x u16 members
// Ranks are strictly ascending (sorted, unique). Decoders treat the body as hostile: the length
// must be exactly what n says, n is bounded by the run size before anything is allocated, and
// every rank must lie inside the run.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "broker/envelope.h"
#include "common/status.h"
#include "sync/mailbox.h"

namespace p2p::sync::membership {

struct ViewProposal {
  uint64_t base_view = 0;  // id of the proposer's last stable view (all proposals must share it)
  Round last_round;        // the last round the proposer completed and applied
  std::vector<int> alive;  // members of the base view the proposer still hears, itself included
  bool operator==(const ViewProposal&) const = default;
};

struct ViewInstall {
  uint64_t base_view = 0;  // the stable view this one replaces
  Round resume_after;      // the last round every member completed: members ahead undo one round
  std::vector<int> members;
  bool operator==(const ViewInstall&) const = default;
};

broker::Bytes EncodeViewProposal(const ViewProposal& p);
broker::Bytes EncodeViewInstall(const ViewInstall& i);
// DataLoss for a malformed body; InvalidArgument for ranks outside [0, run_size) or unsorted.
Result<ViewProposal> DecodeViewProposal(std::span<const std::byte> body, int run_size);
Result<ViewInstall> DecodeViewInstall(std::span<const std::byte> body, int run_size);

}  // namespace p2p::sync::membership
