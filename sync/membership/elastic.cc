#include "sync/membership/elastic.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <utility>

namespace p2p::sync::membership {

Membership::Membership(Mailbox& mailbox, MembershipOptions options)
    : mailbox_(mailbox), options_(std::move(options)), stable_(mailbox.view()) {}

void Membership::Completed(Round round) {
  round.view = 0;  // rounds are compared by (epoch, step) across views
  completed_ = round;
  stable_ = mailbox_.view();
}

Result<Round> Membership::Recover(const Status& failure) {
  const auto start = std::chrono::steady_clock::now();
  const std::vector<int> suspects = Intersect(mailbox_.Suspects(), mailbox_.view().members);
  if (suspects.empty() && !mailbox_.ViewChangePending()) return failure;
  if (!options_.continue_on_failure) {
    return failure.Annotate("--on-failure stop: the run ends when a peer fails");
  }
  spdlog::warn("view {}: {}; agreeing on the next view without rank(s) ({})", mailbox_.view().id,
               failure.message(), RankList(suspects));
  next_id_ = std::max(next_id_, mailbox_.view().id + 1);
  P2P_ASSIGN_OR_RETURN(
      ViewChangeOutcome outcome,
      AgreeOnNextView(mailbox_, {stable_, next_id_, suspects, completed_}, options_.view_change));
  next_id_ = outcome.view.id + 1;
  ViewChangeRecord record;
  record.view = outcome.view.id;
  record.members = outcome.view.members;
  record.evicted = Without(mailbox_.view().members, outcome.view.members);
  record.resume_after = outcome.resume_after;
  mailbox_.InstallView(outcome.view);
  record.recovery_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  changes_.push_back(record);
  return outcome.resume_after;
}

void Membership::Admit(View view) {
  ViewChangeRecord record;
  record.view = view.id;
  record.members = view.members;
  record.joined = Without(view.members, mailbox_.view().members);
  record.resume_after = completed_;
  spdlog::info("view {}: admitted rank(s) {} (joined); members {}", view.id,
               RankList(record.joined), RankList(view.members));
  next_id_ = std::max(next_id_, view.id + 1);
  mailbox_.InstallView(std::move(view));
  stable_ = mailbox_.view();
  changes_.push_back(std::move(record));
}

std::vector<ViewChangeRecord> Membership::TakeChanges() { return std::exchange(changes_, {}); }

}  // namespace p2p::sync::membership
