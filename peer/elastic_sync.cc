#include "peer/elastic_sync.h"

#include <fmt/format.h>

#include "sync/agreement.h"

namespace p2p::peer {

using sync::membership::kEpochEndStep;

ElasticSync::ElasticSync(sync::Mailbox& mailbox, sync::Strategy& strategy,
                         sync::membership::Membership* membership,
                         broker::Clock::duration round_timeout, ViewCheck check_view)
    : mailbox_(mailbox),
      strategy_(strategy),
      membership_(membership),
      round_timeout_(round_timeout),
      check_view_(std::move(check_view)) {}

Result<bool> ElasticSync::RecoverFrom(const Status& failure) {
  if (membership_ == nullptr) return failure;
  const sync::Round mine = membership_->completed();
  P2P_ASSIGN_OR_RETURN(const sync::Round resume, membership_->Recover(failure));
  if (check_view_) P2P_RETURN_IF_ERROR(check_view_(mailbox_.view()));
  if (resume == mine) return true;
  if (resume > mine) {
    return Internal("view change resumes after epoch {} step {}, a round this peer never completed",
                    resume.epoch, resume.step);
  }
  if (mine.step == kEpochEndStep) {
    // The epoch was evaluated, checkpointed and reported with the old members' totals: that
    // cannot be undone, so this peer leaves rather than diverge (the others evict it).
    return Unavailable(
        "a member died during the end-of-epoch {} exchange after this peer had completed it; this "
        "peer cannot roll back an evaluated epoch and stops (restart it with --join to rejoin)",
        mine.epoch);
  }
  membership_->Completed(resume);  // its own view again, after the rollback redoes `mine`
  return false;
}

Result<RoundOutcome> ElasticSync::Round(const StepInfo& info, std::span<float> grad) {
  const sync::Round round{static_cast<uint64_t>(info.epoch), static_cast<uint64_t>(info.round)};
  const auto samples = static_cast<uint32_t>(info.samples);
  if (membership_ == nullptr) {
    P2P_RETURN_IF_ERROR(strategy_.Average(round, samples, grad));
    return RoundOutcome::kApply;
  }
  local_.assign(grad.begin(), grad.end());
  state_before_ = strategy_.SaveState();
  while (true) {
    Status s = strategy_.Average(round, samples, grad);
    if (s.ok()) {
      membership_->Completed(round);
      state_before_previous_ = std::move(state_before_);
      return RoundOutcome::kApply;
    }
    P2P_ASSIGN_OR_RETURN(const bool redo_this, RecoverFrom(s));
    if (!redo_this) {
      P2P_RETURN_IF_ERROR(strategy_.LoadState(state_before_previous_));
      return RoundOutcome::kRedoPreviousRound;
    }
    std::copy(local_.begin(), local_.end(), grad.begin());
    P2P_RETURN_IF_ERROR(strategy_.LoadState(state_before_));
  }
}

Result<RoundOutcome> ElasticSync::EpochEnd(int epoch, sync::EpochTotals& totals) {
  while (true) {
    auto sum = sync::ExchangeEpochTotals(mailbox_, static_cast<uint64_t>(epoch), totals,
                                         broker::Clock::now() + round_timeout_);
    if (sum.ok()) {
      totals = *sum;
      if (membership_ != nullptr) membership_->Completed({uint64_t(epoch), kEpochEndStep});
      return RoundOutcome::kApply;
    }
    P2P_ASSIGN_OR_RETURN(const bool redo_this, RecoverFrom(sum.status()));
    if (!redo_this) {
      P2P_RETURN_IF_ERROR(strategy_.LoadState(state_before_previous_));
      return RoundOutcome::kRedoPreviousRound;
    }
  }
}

Status ElasticSync::End(uint64_t epochs_done, const std::string& param_hash) {
  while (true) {
    Status s =
        sync::AgreeOnEnd(mailbox_, epochs_done, param_hash, broker::Clock::now() + round_timeout_);
    if (s.ok()) return s;
    P2P_ASSIGN_OR_RETURN(const bool redo_this, RecoverFrom(s));
    if (!redo_this) return s.Annotate("a member died while the run was ending");
  }
}

}  // namespace p2p::peer
