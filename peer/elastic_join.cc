#include "peer/elastic_join.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <map>
#include <optional>
#include <string>
#include <utility>

#include "common/hash.h"
#include "peer/checkpoint.h"

namespace p2p::peer {
namespace {

using broker::MessageType;
using sync::membership::RankList;
using sync::membership::View;

constexpr auto kJoinResend = std::chrono::seconds(1);
constexpr int64_t kMaxStepsPerEpoch = int64_t{1} << 40;

broker::Bytes ToBytes(const std::string& s) {
  const auto* p = reinterpret_cast<const std::byte*>(s.data());
  return broker::Bytes(p, p + s.size());
}

std::string ToString(const broker::Bytes& b) {
  return std::string(reinterpret_cast<const char*>(b.data()), b.size());
}

// The view and epoch length a STATE's checkpoint carries in its "extra" (written by Admit).
struct StateMeta {
  View view;
  int64_t steps_per_epoch = 0;
};

Result<StateMeta> ReadStateMeta(const nlohmann::json& extra, int rank, int size, int from) {
  StateMeta m;
  const auto bad = [&](const std::string& why) {
    return DataLoss("the state sent by rank {} is malformed: {}", from, why);
  };
  try {
    m.view.id = extra.at("view").get<uint64_t>();
    m.view.members = extra.at("members").get<std::vector<int>>();
    m.steps_per_epoch = extra.at("steps_per_epoch").get<int64_t>();
  } catch (const nlohmann::json::exception&) {
    return bad("no view, members or steps_per_epoch");
  }
  if (m.view.id == 0) return bad("view 0 is the run's first view, never an admission");
  if (m.view.members.empty() || m.view.members.size() > static_cast<size_t>(size) ||
      !std::is_sorted(m.view.members.begin(), m.view.members.end()) ||
      std::adjacent_find(m.view.members.begin(), m.view.members.end()) != m.view.members.end() ||
      m.view.members.front() < 0 || m.view.members.back() >= size) {
    return bad(fmt::format("members [{}] are not ascending ranks of the run",
                           fmt::join(m.view.members, ", ")));
  }
  if (!m.view.Contains(rank) || !m.view.Contains(from)) {
    return bad(fmt::format("view {} ({}) does not hold both this rank {} and the sender", m.view.id,
                           RankList(m.view.members), rank));
  }
  if (m.steps_per_epoch < 1 || m.steps_per_epoch > kMaxStepsPerEpoch) {
    return bad(fmt::format("{} steps per epoch", m.steps_per_epoch));
  }
  return m;
}

// The handshake with every other rank, re-sending this rank's JOIN to the ranks that have not
// answered yet: a member refuses it (rank_taken) until it has evicted this rank's old incarnation.
Status Rehandshake(sync::Mailbox& mailbox, sync::SessionAuthenticator& auth,
                   broker::Deadline deadline) {
  auto next_resend = broker::Clock::now();
  while (!auth.joined()) {
    if (broker::Clock::now() >= next_resend) {
      for (int r : auth.handshake().missing()) {
        broker::Envelope join;
        join.type = MessageType::kJoin;
        join.body = auth.handshake().JoinMessage();
        // A rank that cannot take it now (dead, or its run ended) may later: the deadline decides.
        if (Status s = mailbox.Send(std::move(join), r);
            !s.ok() && s.code() != StatusCode::kUnavailable) {
          return s;
        }
      }
      next_resend = broker::Clock::now() + kJoinResend;
    }
    Status s = mailbox.Pump(std::min(deadline, next_resend));
    if (s.code() == StatusCode::kTimeout && broker::Clock::now() >= deadline) {
      return Timeout(
          "rejoin handshake: rank(s) {} did not take this restarted peer back before the deadline "
          "(--connect-timeout): {}. A member answers only once it has evicted this rank's previous "
          "process (after --peer-timeout)",
          fmt::join(auth.handshake().missing(), ", "), auth.handshake().MissingReport());
    }
    if (s.code() != StatusCode::kTimeout) P2P_RETURN_IF_ERROR(s);
    P2P_RETURN_IF_ERROR(sync::SendHandshakeReplies(mailbox, auth));
  }
  return Status::Ok();
}

// Pumps until a parked envelope of `type` that `match` accepts arrives, or the deadline.
Result<broker::Envelope> AwaitParked(sync::Mailbox& mailbox, MessageType type,
                                     const std::function<bool(const broker::Envelope&)>& match,
                                     broker::Deadline deadline, const std::string& what) {
  while (true) {
    if (auto env = mailbox.TakeParked(type, match)) return std::move(*env);
    Status s = mailbox.Pump(deadline);
    if (s.code() == StatusCode::kTimeout) {
      return Timeout("rejoin: no {} before the deadline (--join-timeout)", what);
    }
    P2P_RETURN_IF_ERROR(s);
  }
}

}  // namespace

Status CheckJoinFlags(const PeerOptions& o) {
  if (!o.join) return Status::Ok();
  if (o.heartbeat_s <= 0 || o.on_failure != "continue") {
    return InvalidArgument(
        "--join needs peers that survive failures (--heartbeat > 0 and --on-failure continue, "
        "the defaults): only they evict a dead rank and admit it back");
  }
  if (o.transport != "zmq" || !o.rendezvous.empty()) {
    return InvalidArgument(
        "--join is implemented for --transport zmq with --peers only (not over a rendezvous or "
        "RabbitMQ yet)");
  }
  if (o.strategy == "spirt") return InvalidArgument("--join does not support --strategy spirt");
  return Status::Ok();
}

JoinDesk::JoinDesk(sync::Mailbox& mailbox, sync::SessionAuthenticator* auth, Trainer& trainer,
                   sync::membership::Membership& membership, int64_t steps_per_epoch,
                   std::chrono::milliseconds handshake_timeout)
    : mailbox_(mailbox),
      auth_(auth),
      trainer_(trainer),
      membership_(membership),
      steps_per_epoch_(steps_per_epoch),
      handshake_timeout_(handshake_timeout) {
  if (auth_ != nullptr) {
    // Only a rank outside the view may run the handshake again: a member's JOIN is refused.
    auth_->set_rejoinable([this](int r) { return !mailbox_.view().Contains(r); });
  }
}

Status JoinDesk::Poll() {
  if (auth_ != nullptr) P2P_RETURN_IF_ERROR(sync::SendHandshakeReplies(mailbox_, *auth_));
  const auto outside = [this](const broker::Envelope& e) {
    return !mailbox_.view().Contains(e.sender);
  };
  while (auto env = mailbox_.TakeParked(MessageType::kJoinRequest, outside)) {
    if (requests_.insert(env->sender).second) {
      spdlog::info("rank {} (restarted) asks to rejoin; it is admitted at the end of this epoch",
                   env->sender);
    }
  }
  return Status::Ok();
}

std::vector<int> JoinDesk::Requests() {
  std::erase_if(requests_, [this](int r) { return mailbox_.view().Contains(r); });
  return {requests_.begin(), requests_.end()};
}

Status JoinDesk::WaitForHandshake(int joiner) {
  if (auth_ == nullptr) return Status::Ok();
  const auto deadline = broker::Clock::now() + handshake_timeout_;
  // The joiner's proof to us was sent before its request reached any member: it is in flight.
  while (auth_->handshake().keys(joiner) == nullptr) {
    Status s = mailbox_.Pump(deadline);
    if (s.code() == StatusCode::kTimeout) {
      return Timeout(
          "cannot admit rank {}: the other members agreed to, but its handshake with this peer "
          "did not finish within {} ms",
          joiner, handshake_timeout_.count());
    }
    P2P_RETURN_IF_ERROR(s);
    P2P_RETURN_IF_ERROR(sync::SendHandshakeReplies(mailbox_, *auth_));
  }
  return Status::Ok();
}

Status JoinDesk::Admit(int epoch, const std::vector<int>& joiners) {
  if (joiners.empty()) return Status::Ok();
  for (int j : joiners) P2P_RETURN_IF_ERROR(WaitForHandshake(j));
  const View before = mailbox_.view();
  View next{before.id + 1, before.members};
  next.members.insert(next.members.end(), joiners.begin(), joiners.end());
  std::sort(next.members.begin(), next.members.end());
  membership_.Admit(next);
  for (int j : joiners) requests_.erase(j);

  const std::string hash = HashFloats(trainer_.model().Params());
  for (int j : joiners) {
    broker::Envelope env;
    env.type = MessageType::kParamsHash;
    env.epoch = static_cast<uint64_t>(epoch);
    env.body = ToBytes(hash);
    P2P_RETURN_IF_ERROR(mailbox_.Send(std::move(env), j));
  }
  // One member sends the state: the lowest of the previous view, which every member agrees on.
  if (mailbox_.rank() != before.members.front()) return Status::Ok();
  Checkpoint state = trainer_.Snapshot(epoch);
  state.extra = {
      {"view", next.id}, {"members", next.members}, {"steps_per_epoch", steps_per_epoch_}};
  const broker::Bytes body = ToBytes(SerializeCheckpoint(state));
  for (int j : joiners) {
    broker::Envelope env;
    env.type = MessageType::kState;
    env.epoch = static_cast<uint64_t>(epoch);
    env.body = body;
    P2P_RETURN_IF_ERROR(mailbox_.Send(std::move(env), j));
  }
  spdlog::info("sent the state after epoch {} ({} bytes, parameters {}) to rank(s) {}", epoch,
               body.size(), hash, RankList(joiners));
  return Status::Ok();
}

Result<Admission> Rejoin(sync::Mailbox& mailbox, sync::SessionAuthenticator* auth, Trainer& trainer,
                         broker::Deadline handshake_deadline, broker::Deadline admission_deadline) {
  const int rank = mailbox.rank();
  if (auth != nullptr) P2P_RETURN_IF_ERROR(Rehandshake(mailbox, *auth, handshake_deadline));
  for (int r = 0; r < mailbox.size(); ++r) {
    if (r == rank) continue;
    broker::Envelope request;
    request.type = MessageType::kJoinRequest;
    P2P_RETURN_IF_ERROR(mailbox.Send(std::move(request), r));
  }
  spdlog::info("rank {} asked the members to rejoin; waiting for the end of their epoch", rank);

  P2P_ASSIGN_OR_RETURN(broker::Envelope state_env, AwaitParked(
                                                       mailbox, MessageType::kState,
                                                       [](const broker::Envelope&) { return true; },
                                                       admission_deadline, "STATE from a member"));
  const int from = state_env.sender;
  P2P_ASSIGN_OR_RETURN(
      Checkpoint state,
      ParseCheckpoint(ToString(state_env.body), fmt::format("the state sent by rank {}", from)));
  P2P_ASSIGN_OR_RETURN(const StateMeta meta,
                       ReadStateMeta(state.extra, rank, mailbox.size(), from));
  if (state.epoch < 0 || static_cast<uint64_t>(state.epoch) != state_env.epoch) {
    return DataLoss("the state sent by rank {} is for epoch {} but its envelope says {}", from,
                    state.epoch, state_env.epoch);
  }
  // Every member of the new view vouches for the parameters: the state is used only if its
  // parameters hash to what each of them reports.
  const std::string hash = HashFloats(state.params);
  for (int m : meta.view.members) {
    if (m == rank) continue;
    P2P_ASSIGN_OR_RETURN(
        broker::Envelope vouch,
        AwaitParked(
            mailbox, MessageType::kParamsHash,
            [&](const broker::Envelope& e) { return e.sender == m && e.epoch == state_env.epoch; },
            admission_deadline, fmt::format("PARAMS_HASH from rank {}", m)));
    if (ToString(vouch.body) != hash) {
      return DataLoss(
          "refused the state sent by rank {}: its parameters hash to {} but rank {} reports {} "
          "after epoch {}; nothing of it was used (a corrupted or forged state)",
          from, hash, m, ToString(vouch.body), state.epoch);
    }
  }
  P2P_RETURN_IF_ERROR(trainer.Adopt(state, fmt::format("state sent by rank {}", from)));
  mailbox.InstallView(meta.view);
  spdlog::info(
      "rejoined: view {} (ranks {}) after epoch {}, parameters {} (checked against {} "
      "members)",
      meta.view.id, RankList(meta.view.members), state.epoch, hash, meta.view.members.size() - 1);
  return Admission{.epoch = state.epoch, .steps_per_epoch = meta.steps_per_epoch, .from = from};
}

}  // namespace p2p::peer
