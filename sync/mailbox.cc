#include "sync/mailbox.h"

#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include <algorithm>

#include "common/byte_pool.h"

namespace p2p::sync {

uint64_t RejectCounts::total() const {
  uint64_t t = 0;
  for (const auto& [reason, n] : by_reason) t += n;
  return t;
}

bool ViewScoped(broker::MessageType type) {
  using broker::MessageType;
  return type == MessageType::kGradient || type == MessageType::kAggregate ||
         type == MessageType::kEpochEnd || type == MessageType::kBarrier ||
         type == MessageType::kParamsHash;
}

Mailbox::Mailbox(broker::Transport& transport, Options options)
    : transport_(transport),
      options_(std::move(options)),
      view_(membership::InitialView(transport.size())) {}

void Mailbox::StartFailureDetection(std::chrono::milliseconds suspect_after) {
  std::lock_guard live(liveness_mu_);
  suspect_after_ = suspect_after;
  detector_.emplace(rank(), view_.members, suspect_after, broker::Clock::now());
}

Status Mailbox::Send(broker::Envelope env, int to) {
  std::lock_guard lock(send_mu_);
  Status s = SendLocked(env, to);
  if (s.ok() && ViewScoped(env.type) && WatchingLiveness()) {
    // Kept for RESEND (only asked for with failure detection); its body goes back to the pool
    // once a later round replaces it.
    Keep(std::move(env), to);
  } else {
    BytePool::Global().Give(std::move(env.body));
  }
  return s;
}

Status Mailbox::SendLocked(broker::Envelope& env, int to) {
  env.run_id = options_.run_id;
  env.sender = transport_.rank();
  env.view = view_.id;
  Authenticator* auth = options_.authenticator;
  const bool watched = WatchingLiveness();
  // With failure detection, or once the view lost a member, "everyone" is sent member by member:
  // a dead member must cost one failed send, not block or fail the broadcast to the others. Not
  // when the broker fans the broadcast out: one publish reaches every queue, and a dead or
  // evicted member's copy is dropped with its queue (or rejected by it as from another view).
  const bool one_by_one = to == broker::kAllRanks && !transport_.FansOutElsewhere() &&
                          (watched || view_.members.size() < static_cast<size_t>(size()));
  // One signature covers every receiver unless the authenticator cannot (then one per receiver).
  const bool sign_each =
      to == broker::kAllRanks && auth != nullptr && size() - 1 > auth->MaxBroadcastReceivers();
  if (!one_by_one && !sign_each) return SignAndSend(env, to, to);
  if (!sign_each) {
    env.receiver = broker::kAllRanks;
    env.seq = next_seq_++;
    if (auth != nullptr) P2P_RETURN_IF_ERROR(auth->Sign(env));
    P2P_ASSIGN_OR_RETURN(broker::Bytes bytes, broker::EncodeEnvelope(env));
    const ReturnToPool give_bytes_back{bytes};
    for (int r : view_.members) {
      if (r != rank()) P2P_RETURN_IF_ERROR(SendBytes(r, bytes));
    }
    return Status::Ok();
  }
  for (int r : view_.members) {
    if (r != rank()) P2P_RETURN_IF_ERROR(SignAndSend(env, r, r));
  }
  return Status::Ok();
}

// Signs `env` addressed to `receiver` and sends it to rank `to` (or broadcasts: kAllRanks).
Status Mailbox::SignAndSend(broker::Envelope& env, int receiver, int to) {
  env.receiver = receiver;
  env.seq = next_seq_++;
  if (options_.authenticator != nullptr) P2P_RETURN_IF_ERROR(options_.authenticator->Sign(env));
  P2P_ASSIGN_OR_RETURN(broker::Bytes bytes, broker::EncodeEnvelope(env));
  const ReturnToPool give_back{bytes};
  if (to == broker::kAllRanks) return transport_.Broadcast(bytes);
  return SendBytes(to, bytes);
}

// Sends to one rank. With failure detection a rank the transport cannot reach is reported gone
// (and skipped from then on) instead of failing the caller: the failure detector and the view
// change deal with it.
Status Mailbox::SendBytes(int to, std::span<const std::byte> bytes) {
  {
    std::lock_guard live(liveness_mu_);
    if (detector_ && detector_->IsGone(to)) return Status::Ok();
  }
  Status s = transport_.Send(to, bytes);
  if (s.code() != StatusCode::kUnavailable) return s;
  std::lock_guard live(liveness_mu_);
  if (!detector_) return s;
  spdlog::warn("rank {} cannot be reached ({}); suspecting it", to, s.message());
  detector_->Gone(to);
  return Status::Ok();
}

bool Mailbox::WatchingLiveness() {
  std::lock_guard live(liveness_mu_);
  return detector_.has_value();
}

void Mailbox::InstallView(membership::View view) {
  {
    std::lock_guard lock(send_mu_);
    P2P_CHECK(view.id > view_.id && view.Contains(rank()), "installing view {} after {}", view.id,
              view_.id);
    for (int r : view.members) {
      // A rank that joins (again) is a new process: its seq numbers start afresh.
      if (!view_.Contains(r)) last_seq_from_.erase(r);
    }
    view_ = std::move(view);
    sent_.clear();  // rounds of earlier views are never asked for again
  }
  view_installed_at_ = broker::Clock::now();
  install_forwarded_at_.clear();
  std::lock_guard live(liveness_mu_);
  if (detector_) detector_->Watch(view_.members, broker::Clock::now());
  // Parked messages of earlier views can never be collected now.
  std::erase_if(parked_, [&](const auto& entry) {
    const auto& [type, round, sender] = entry.first;
    return (ViewScoped(type) && round.view < view_.id) || !view_.Contains(sender);
  });
}

std::vector<int> Mailbox::Suspects() {
  std::lock_guard live(liveness_mu_);
  if (!detector_) return {};
  return detector_->Suspects(broker::Clock::now());
}

void Mailbox::Suspect(const std::vector<int>& ranks) {
  std::lock_guard live(liveness_mu_);
  if (!detector_) return;
  for (int r : ranks) detector_->Gone(r);
}

bool Mailbox::ViewChangePending() const {
  return std::any_of(parked_.begin(), parked_.end(), [&](const auto& entry) {
    const broker::MessageType type = std::get<0>(entry.first);
    return (type == broker::MessageType::kViewPropose ||
            type == broker::MessageType::kViewInstall) &&
           entry.second.epoch > view_.id;
  });
}

void Mailbox::Heard(int sender) {
  std::lock_guard live(liveness_mu_);
  if (detector_) detector_->Heard(sender, broker::Clock::now());
}

Status Mailbox::Pump(broker::Deadline deadline) { return ReceiveOne(deadline); }

void Mailbox::Reject(const std::string& reason, const std::string& detail, int sender) {
  ++rejects_.by_reason[reason];
  // One log line per reason and claimed sender: a flood of bad messages must not become a flood
  // of log lines (senders are checked to be ranks of the run first, so this set stays small).
  if (++by_source_[{reason, sender}] == 1) {
    spdlog::warn(
        "dropped a message ({}): {}; further drops for this reason from this sender are only "
        "counted (metrics \"rejected\", and a summary when the run ends)",
        reason, detail);
  }
}

void Mailbox::LogRejectSummary() const {
  for (const auto& [key, n] : by_source_) {
    spdlog::warn("dropped {} message(s) ({}) claiming to come from rank {}", n, key.first,
                 key.second);
  }
}

bool Mailbox::Admit(const broker::Envelope& env) {
  using broker::MessageType;
  Authenticator* auth = options_.authenticator;
  if (auth == nullptr) {
    const bool handshake = env.type == MessageType::kJoin || env.type == MessageType::kChallenge ||
                           env.type == MessageType::kWelcome;
    if (handshake) {
      Reject("unexpected_handshake",
             fmt::format("rank {} authenticates (it sent a {}) but this peer does not "
                         "(--insecure): all peers of a run must use the same mode",
                         env.sender, broker::MessageTypeName(env.type)),
             env.sender);
    }
    return !handshake;
  }
  Authenticator::Verdict verdict = auth->Verify(env);
  if (verdict.action == Authenticator::Action::kReject) {
    Reject(verdict.reason, verdict.detail, env.sender);
  }
  return verdict.action == Authenticator::Action::kAccept;
}

// What a restarted rank outside the view sends to be admitted again (docs/membership.md,
// "Rejoining"): its handshake and its request. The authenticator still judges all of it.
static bool RejoinTraffic(broker::MessageType type) {
  using broker::MessageType;
  return type == MessageType::kJoin || type == MessageType::kWelcome ||
         type == MessageType::kJoinRequest;
}

bool Mailbox::RejectedByView(const broker::Envelope& env) {
  if (!view_.Contains(env.sender) && !RejoinTraffic(env.type)) {
    Reject("evicted_sender",
           fmt::format("rank {} is not a member of view {} ({}): it was evicted, and nothing it "
                       "sends is applied",
                       env.sender, view_.id, membership::RankList(view_.members)),
           env.sender);
    return true;
  }
  if (ViewScoped(env.type) && env.view < view_.id) {
    Reject("stale_view",
           fmt::format("{} of view {} from rank {} arrived after view {} was installed",
                       broker::MessageTypeName(env.type), env.view, env.sender, view_.id),
           env.sender);
    return true;
  }
  return false;
}

void Mailbox::Park(broker::Envelope env) {
  const Round round{env.epoch, env.step, ViewScoped(env.type) ? env.view : 0};
  const auto done = completed_.find(env.type);
  if (done != completed_.end() && round <= done->second) {
    return Reject("stale",
                  fmt::format("{} for epoch {} step {} from rank {} arrived after its "
                              "round completed",
                              broker::MessageTypeName(env.type), env.epoch, env.step, env.sender),
                  env.sender);
  }
  if (done != completed_.end() && round.view == done->second.view &&
      round.epoch == done->second.epoch &&
      round.step > done->second.step + options_.max_rounds_ahead) {
    return Reject(
        "out_of_window",
        fmt::format("rank {} is {} rounds ahead", env.sender, round.step - done->second.step),
        env.sender);
  }
  const Key key{env.type, round, env.sender};
  const auto from_sender = std::count_if(parked_.begin(), parked_.end(), [&](const auto& entry) {
    return std::get<2>(entry.first) == env.sender;
  });
  if (static_cast<size_t>(from_sender) >= options_.max_parked_per_sender &&
      !parked_.contains(key)) {
    return Reject("sender_quota",
                  fmt::format("rank {} already has {} messages waiting for rounds not collected "
                              "yet (a peer far ahead, or a flood)",
                              env.sender, from_sender),
                  env.sender);
  }
  if (parked_.contains(key)) {
    return Reject("duplicate",
                  fmt::format("second {} for epoch {} step {} from rank {}",
                              broker::MessageTypeName(env.type), env.epoch, env.step, env.sender),
                  env.sender);
  }
  parked_.emplace(key, std::move(env));
}

Status Mailbox::ReceiveOne(broker::Deadline deadline) {
  P2P_ASSIGN_OR_RETURN(std::optional<broker::Message> msg, transport_.Receive(deadline));
  if (!msg) return Timeout("deadline passed");
  auto env = broker::DecodeEnvelope(std::move(msg->payload));  // the payload becomes the body
  if (!env.ok()) {
    Reject("malformed", env.status().message(), msg->from_rank);
    return Status::Ok();
  }
  if (env->run_id != options_.run_id) {
    Reject("wrong_run",
           fmt::format("run id '{}' is not this run's '{}'", env->run_id, options_.run_id),
           msg->from_rank);
  } else if (env->sender < 0 || env->sender >= size() || env->sender == rank()) {
    Reject("unexpected_sender", fmt::format("sender rank {} in a run of {}", env->sender, size()),
           msg->from_rank);
  } else if (env->receiver != broker::kAllRanks && env->receiver != rank()) {
    Reject("misaddressed", fmt::format("addressed to rank {}", env->receiver), env->sender);
  } else if (!RejectedByView(*env) && Admit(*env)) {
    // Authenticated (not merely admitted, as with --insecure): the source that carried it is the
    // real sender, which the transport keeps ahead of unproven sources claiming its rank.
    if (options_.authenticator != nullptr && env->sender == msg->from_rank) {
      transport_.ConfirmSender(msg->from_rank, msg->link);
    }
    Heard(env->sender);
    auto& last = last_seq_from_[env->sender];
    last = std::max(last, env->seq);
    if (env->view < view_.id) CatchUp(env->sender);
    if (env->type == broker::MessageType::kResend) {
      AnswerResend(*env);
    } else if (env->type != broker::MessageType::kHeartbeat) {
      Park(std::move(*env));
    }
  }
  return Status::Ok();
}

Result<std::map<int, broker::Envelope>> Mailbox::Collect(broker::MessageType type, Round round,
                                                         const std::vector<int>& from,
                                                         broker::Deadline deadline,
                                                         const std::string& what,
                                                         bool complete_round) {
  auto missing = [&] {
    std::vector<int> out;
    for (int r : from) {
      if (!parked_.contains(Key{type, round, r})) out.push_back(r);
    }
    return out;
  };
  bool drain = false, drained = false;
  auto next_ask = broker::Clock::now() + resend_after();
  for (auto still = missing(); !still.empty(); still = missing()) {
    if (ViewChangePending()) {
      return Unavailable("{}: another member started a view change (sync/membership/)", what);
    }
    broker::Deadline wait_until = deadline;
    {
      std::lock_guard live(liveness_mu_);
      if (detector_) {
        const auto now = broker::Clock::now();
        auto suspected = membership::Intersect(detector_->Suspects(now), still);
        if (!suspected.empty() && !drained) {
          // What arrived while this thread was busy elsewhere (computing, or blocked in a send)
          // proves life too: read it all before judging anyone silent.
          drain = true;
          suspected.clear();
        }
        if (!suspected.empty()) {
          return Unavailable("{}: rank(s) {} suspected dead (silent for {} ms or unreachable)",
                             what, membership::RankList(suspected), suspect_after_.count());
        }
        if (auto next = detector_->NextSuspicion(now)) wait_until = std::min(wait_until, *next);
      }
    }
    if (drain) {
      // Bounded, so a flood cannot keep this loop from judging.
      Status d = Status::Ok();
      for (int i = 0; i < 100000 && d.ok(); ++i) d = ReceiveOne(broker::Clock::now());
      if (!d.ok() && d.code() != StatusCode::kTimeout) return d;
      drained = true;
      drain = false;
      continue;
    }
    if (WatchingLiveness() && broker::Clock::now() >= next_ask) {
      // Alive (not suspected) yet nothing for this round: its message may have been lost.
      AskResend(type, round, still);
      next_ask = broker::Clock::now() + resend_after();
    }
    if (WatchingLiveness()) wait_until = std::min(wait_until, next_ask);
    Status s = ReceiveOne(wait_until);
    drained = false;
    if (s.code() == StatusCode::kTimeout && broker::Clock::now() < deadline) continue;
    if (s.code() == StatusCode::kTimeout) {
      return Timeout(
          "{}: nothing from rank(s) {} before the deadline; a peer may have died or "
          "be far slower (see --peer-timeout, and --round-timeout with heartbeats)",
          what, fmt::join(still, ", "));
    }
    P2P_RETURN_IF_ERROR(s);
  }
  std::map<int, broker::Envelope> out;
  for (int r : from) {
    auto node = parked_.extract(Key{type, round, r});
    out.emplace(r, std::move(node.mapped()));
  }
  if (complete_round) CompleteRounds(type, round);
  return out;
}

void Mailbox::CompleteRounds(broker::MessageType type, Round round) {
  auto& done = completed_[type];
  done = std::max(done, round);
  // Late duplicates parked before the round completed can never be asked for again.
  std::erase_if(parked_, [&](const auto& entry) {
    return std::get<0>(entry.first) == type && std::get<1>(entry.first) <= done;
  });
}

std::optional<broker::Envelope> Mailbox::TakeParked(
    broker::MessageType type, const std::function<bool(const broker::Envelope&)>& match) {
  for (auto it = parked_.begin(); it != parked_.end(); ++it) {
    if (std::get<0>(it->first) == type && match(it->second)) {
      broker::Envelope env = std::move(it->second);
      parked_.erase(it);
      return env;
    }
  }
  return std::nullopt;
}

}  // namespace p2p::sync
