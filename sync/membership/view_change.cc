#include "sync/membership/view_change.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <limits>
#include <map>
#include <optional>

#include "sync/membership/view_messages.h"

namespace p2p::sync::membership {
namespace {

using broker::MessageType;
using Clock = std::chrono::steady_clock;

Status LostQuorum(const std::vector<int>& reachable, const View& stable) {
  return Unavailable(
      "lost quorum: {} of {} ranks reachable ({}); view {} needs a strict majority to go on, so "
      "this side stops instead of training apart from the others",
      reachable.size(), stable.members.size(), RankList(reachable), stable.id);
}

Status Evicted(uint64_t id, int coordinator, const std::vector<int>& members) {
  return Unavailable(
      "evicted from view {}: rank {} installed it with members ({}) without this peer, which "
      "stops rather than send stale gradients; start it again with --join to rejoin",
      id, coordinator, RankList(members));
}

// Sends one VIEW_* envelope to each of `to` (except self). A rank that cannot be reached is
// skipped: the protocol tolerates the loss, and it is the failure being handled.
Status SendEach(Mailbox& mailbox, const std::vector<int>& to, MessageType type, uint64_t id,
                int coordinator, const broker::Bytes& body) {
  for (int r : to) {
    if (r == mailbox.rank()) continue;
    broker::Envelope env;
    env.type = type;
    env.epoch = id;
    env.step = static_cast<uint64_t>(coordinator);
    env.body = body;
    Status s = mailbox.Send(std::move(env), r);
    if (!s.ok() && s.code() != StatusCode::kUnavailable) return s;
  }
  return Status::Ok();
}

// Once a view is installed, later messages of the change it ended are stale.
void Finish(Mailbox& mailbox, uint64_t id) {
  const Round last{id, std::numeric_limits<uint64_t>::max()};
  mailbox.CompleteRounds(MessageType::kViewPropose, last);
  mailbox.CompleteRounds(MessageType::kViewInstall, last);
}

// The outcome of a VIEW_INSTALL of `input.stable` (or of a later view) that reached this peer.
Result<ViewChangeOutcome> Adopt(Mailbox& mailbox, const broker::Envelope& env,
                                const ViewInstall& install, int attempts) {
  const int coordinator = static_cast<int>(env.step);
  if (!std::binary_search(install.members.begin(), install.members.end(), mailbox.rank())) {
    return Evicted(env.epoch, coordinator, install.members);
  }
  Finish(mailbox, env.epoch);
  mailbox.RememberInstall(env);
  return ViewChangeOutcome{View{env.epoch, install.members}, install.resume_after, coordinator,
                           attempts};
}

// Takes a parked VIEW_INSTALL that replaces the stable view (or a later one), if any arrived.
std::optional<std::pair<broker::Envelope, ViewInstall>> TakeInstall(Mailbox& mailbox,
                                                                    const View& stable) {
  std::optional<ViewInstall> decoded;
  auto env = mailbox.TakeParked(MessageType::kViewInstall, [&](const broker::Envelope& e) {
    auto i = DecodeViewInstall(e.body, mailbox.size());
    if (!i.ok() || i->base_view < stable.id || e.epoch <= stable.id) return false;
    decoded = std::move(*i);
    return true;
  });
  if (!env) return std::nullopt;
  return std::make_pair(std::move(*env), std::move(*decoded));
}

class Coordinator {
 public:
  Coordinator(Mailbox& mailbox, const ViewChangeInput& input, std::vector<int> candidates)
      : mailbox_(mailbox), input_(input), candidates_(std::move(candidates)) {
    proposals_[mailbox.rank()] = ViewProposal{input.stable.id, input.last_round, candidates_};
    id_ = input.next_id;
  }

  // Collects proposals naming this rank until every candidate proposed or the deadline.
  // Returns an install from another coordinator if one arrives first (it wins).
  Result<std::optional<ViewChangeOutcome>> Collect(Clock::time_point deadline, int attempts) {
    while (true) {
      if (auto other = TakeInstall(mailbox_, input_.stable)) {
        P2P_ASSIGN_OR_RETURN(auto out, Adopt(mailbox_, other->first, other->second, attempts));
        return std::optional<ViewChangeOutcome>(std::move(out));
      }
      P2P_RETURN_IF_ERROR(TakeProposals());
      if (AllProposed()) return std::optional<ViewChangeOutcome>();
      Status s = mailbox_.Pump(deadline);
      if (s.code() == StatusCode::kTimeout) return std::optional<ViewChangeOutcome>();
      P2P_RETURN_IF_ERROR(s);
    }
  }

  // Decides and announces the next view from the proposals collected.
  Result<ViewChangeOutcome> Decide(int attempts) {
    std::vector<int> members;
    for (const auto& [rank, p] : proposals_) members.push_back(rank);
    for (const auto& [rank, p] : proposals_) members = Intersect(members, p.alive);
    if (!IsStrictMajority(members, input_.stable)) return LostQuorum(members, input_.stable);
    Round resume = input_.last_round;
    for (int r : members) resume = std::min(resume, proposals_.at(r).last_round);
    const ViewInstall install{input_.stable.id, resume, members};
    // Everyone who may still wait hears the decision: candidates and whoever proposed to us.
    std::vector<int> notify = candidates_;
    for (const auto& [rank, p] : proposals_) notify.push_back(rank);
    std::sort(notify.begin(), notify.end());
    notify.erase(std::unique(notify.begin(), notify.end()), notify.end());
    broker::Envelope decided;
    decided.type = MessageType::kViewInstall;
    decided.epoch = id_;
    decided.step = static_cast<uint64_t>(mailbox_.rank());
    decided.body = EncodeViewInstall(install);
    P2P_RETURN_IF_ERROR(
        SendEach(mailbox_, notify, MessageType::kViewInstall, id_, mailbox_.rank(), decided.body));
    Finish(mailbox_, id_);
    mailbox_.RememberInstall(decided);
    return ViewChangeOutcome{View{id_, members}, resume, mailbox_.rank(), attempts};
  }

 private:
  Status TakeProposals() {
    const int self = mailbox_.rank();
    while (true) {
      std::optional<ViewProposal> decoded;
      auto env = mailbox_.TakeParked(MessageType::kViewPropose, [&](const broker::Envelope& e) {
        if (e.step != static_cast<uint64_t>(self)) return false;
        auto p = DecodeViewProposal(e.body, mailbox_.size());
        if (!p.ok()) return false;
        decoded = std::move(*p);
        return true;
      });
      if (!env) return Status::Ok();
      if (decoded->base_view > input_.stable.id) {
        return Unavailable(
            "evicted: rank {} proposes a successor of view {}, which became stable without this "
            "peer (its last stable view is {}); start it again with --join to rejoin",
            env->sender, decoded->base_view, input_.stable.id);
      }
      // A proposer still on an older stable view missed rounds: it cannot be a member.
      if (decoded->base_view < input_.stable.id || !input_.stable.Contains(env->sender)) continue;
      decoded->alive.erase(std::remove_if(decoded->alive.begin(), decoded->alive.end(),
                                          [&](int r) { return !input_.stable.Contains(r); }),
                           decoded->alive.end());
      id_ = std::max(id_, env->epoch);
      proposals_[env->sender] = std::move(*decoded);
    }
  }

  bool AllProposed() const {
    return std::all_of(candidates_.begin(), candidates_.end(),
                       [&](int r) { return proposals_.contains(r); });
  }

  Mailbox& mailbox_;
  const ViewChangeInput& input_;
  std::vector<int> candidates_;
  std::map<int, ViewProposal> proposals_;
  uint64_t id_ = 0;
};

// A non-coordinator's attempt: propose, then wait for an install. nullopt when none came.
Result<std::optional<ViewChangeOutcome>> ProposeAndWait(Mailbox& mailbox,
                                                        const ViewChangeInput& input,
                                                        const std::vector<int>& candidates,
                                                        int coordinator, Clock::time_point deadline,
                                                        int attempts) {
  const ViewProposal proposal{input.stable.id, input.last_round, candidates};
  P2P_RETURN_IF_ERROR(SendEach(mailbox, {coordinator}, MessageType::kViewPropose, input.next_id,
                               coordinator, EncodeViewProposal(proposal)));
  while (true) {
    if (auto got = TakeInstall(mailbox, input.stable)) {
      P2P_ASSIGN_OR_RETURN(auto out, Adopt(mailbox, got->first, got->second, attempts));
      return std::optional<ViewChangeOutcome>(std::move(out));
    }
    Status s = mailbox.Pump(deadline);
    if (s.code() == StatusCode::kTimeout) return std::optional<ViewChangeOutcome>();
    P2P_RETURN_IF_ERROR(s);
  }
}

}  // namespace

Result<ViewChangeOutcome> AgreeOnNextView(Mailbox& mailbox, const ViewChangeInput& input,
                                          const ViewChangeOptions& options) {
  const int self = mailbox.rank();
  if (!input.stable.Contains(self)) {
    return InvalidArgument("rank {} is not a member of its stable view {}", self, input.stable.id);
  }
  if (input.next_id <= input.stable.id) {
    return InvalidArgument("next view id {} must exceed the stable view's {}", input.next_id,
                           input.stable.id);
  }
  std::vector<int> suspects = Without(input.suspects, {self});
  for (int attempts = 1;; ++attempts) {
    const std::vector<int> candidates = Without(input.stable.members, suspects);
    if (!IsStrictMajority(candidates, input.stable)) return LostQuorum(candidates, input.stable);
    const int coordinator = candidates.front();
    std::optional<ViewChangeOutcome> done;
    if (coordinator == self) {
      Coordinator c(mailbox, input, candidates);
      P2P_ASSIGN_OR_RETURN(done, c.Collect(Clock::now() + options.attempt_timeout, attempts));
      if (!done) {
        P2P_ASSIGN_OR_RETURN(ViewChangeOutcome out, c.Decide(attempts));
        done = std::move(out);
      }
    } else {
      P2P_ASSIGN_OR_RETURN(done,
                           ProposeAndWait(mailbox, input, candidates, coordinator,
                                          Clock::now() + 2 * options.attempt_timeout, attempts));
      if (!done) {
        spdlog::warn("view change: no decision from coordinator rank {} in time; suspecting it",
                     coordinator);
        suspects.push_back(coordinator);
        std::sort(suspects.begin(), suspects.end());
        continue;
      }
    }
    spdlog::info("view {} installed by rank {}: members ({}), resuming after epoch {} step {}",
                 done->view.id, done->coordinator, RankList(done->view.members),
                 done->resume_after.epoch, done->resume_after.step);
    return std::move(*done);
  }
}

}  // namespace p2p::sync::membership
