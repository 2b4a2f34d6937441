#include "sync/session_auth.h"

#include <fmt/ranges.h>

#include "crypto/session_mac.h"

namespace p2p::sync {
namespace {

using broker::MessageType;
using Action = Authenticator::Action;

bool IsHandshake(MessageType type) {
  return type == MessageType::kJoin || type == MessageType::kChallenge ||
         type == MessageType::kWelcome;
}

Authenticator::Verdict Rejected(std::string reason, std::string detail) {
  return {Action::kReject, std::move(reason), std::move(detail)};
}

}  // namespace

SessionAuthenticator::SessionAuthenticator(crypto::JoinHandshake handshake, int rank, int size)
    : handshake_(std::move(handshake)), rank_(rank), size_(size), last_seq_(size, 0) {}

int SessionAuthenticator::MaxBroadcastReceivers() const {
  return static_cast<int>(broker::kMaxSignatureBytes / crypto::kSlotBytes);
}

std::vector<std::pair<int, broker::Envelope>> SessionAuthenticator::TakeReplies() {
  return std::exchange(replies_, {});
}

Status SessionAuthenticator::Sign(broker::Envelope& env) {
  env.signature.clear();
  if (IsHandshake(env.type)) return Status::Ok();  // their bodies carry RSA signatures
  if (env.seq <= last_signed_seq_) {
    return Internal("refusing to sign seq {} after {}: a MAC nonce must never repeat", env.seq,
                    last_signed_seq_);
  }
  std::vector<int> receivers;
  for (int r = 0; r < size_; ++r) {
    if (r != rank_ && (env.receiver == broker::kAllRanks || env.receiver == r)) {
      receivers.push_back(r);
    }
  }
  const broker::Bytes header = broker::SigningHeader(env);
  env.signature.reserve(receivers.size() * crypto::kSlotBytes);
  for (int r : receivers) {
    const crypto::PairKeys* keys = handshake_.keys(r);
    if (keys == nullptr && env.receiver == broker::kAllRanks && rejoinable_ && rejoinable_(r)) {
      // A rank rejoining (outside the view, not proven again yet) receives no broadcast; its slot
      // keeps its place so the others still find theirs by rank.
      env.signature.insert(env.signature.end(), crypto::kSlotBytes, std::byte{0});
      continue;
    }
    if (keys == nullptr) {
      return Internal("cannot authenticate a {} to rank {}: it has not joined yet",
                      broker::MessageTypeName(env.type), r);
    }
    const crypto::Slot slot = crypto::SealSlot(*keys, env.seq, header, env.body);
    env.signature.insert(env.signature.end(), slot.begin(), slot.end());
  }
  last_signed_seq_ = env.seq;
  return Status::Ok();
}

void SessionAuthenticator::PrepareRejoin(const broker::Envelope& join) {
  const int from = join.sender;
  const auto last = last_join_.find(from);
  if (last != last_join_.end() && last->second == join.body) return;  // a resend: same handshake
  if (handshake_.keys(from) != nullptr) {
    handshake_.Forget(from);
    last_seq_[from] = 0;  // a new process: its sequence numbers start over
  }
}

Authenticator::Verdict SessionAuthenticator::OnHandshake(const broker::Envelope& env) {
  crypto::JoinHandshake::Step step;
  if (env.type == MessageType::kJoin) {
    const bool rejoin = rejoinable_ && rejoinable_(env.sender);
    if (rejoin) PrepareRejoin(env);
    step = handshake_.OnJoin(env.sender, env.body);
    if (step.reply && !step.refusal) last_join_[env.sender] = env.body;
    if (rejoin && step.reply && !step.refusal) {
      // The restarted rank never saw our JOIN: it must answer it to prove itself to us.
      broker::Envelope ours;
      ours.type = MessageType::kJoin;
      ours.body = handshake_.JoinMessage();
      replies_.emplace_back(env.sender, std::move(ours));
    }
  } else if (env.type == MessageType::kWelcome) {
    step = handshake_.OnWelcome(env.sender, env.body);
  } else {
    return Rejected(
        "malformed_handshake",
        fmt::format("rank {} sent a CHALLENGE, which this protocol does not use", env.sender));
  }
  if (step.reply && !joined()) {  // after the join nobody waits for an answer
    broker::Envelope reply;
    reply.type = MessageType::kWelcome;
    reply.body = std::move(*step.reply);
    replies_.emplace_back(env.sender, std::move(reply));
  }
  if (step.refusal) return Rejected(step.refusal->reason, step.refusal->detail);
  return {Action::kConsumed, {}, {}};
}

Authenticator::Verdict SessionAuthenticator::Verify(const broker::Envelope& env) {
  if (IsHandshake(env.type)) return OnHandshake(env);
  const int from = env.sender;
  if (env.signature.empty()) {
    return Rejected("unsigned", fmt::format("an unsigned {} claiming rank {}",
                                            broker::MessageTypeName(env.type), from));
  }
  const crypto::PairKeys* keys = handshake_.keys(from);
  if (keys == nullptr) {
    return Rejected("unknown_sender",
                    fmt::format("a {} claiming rank {}, which has not proven its identity",
                                broker::MessageTypeName(env.type), from));
  }
  const bool broadcast = env.receiver == broker::kAllRanks;
  const size_t slots = broadcast ? static_cast<size_t>(size_ - 1) : 1;
  if (env.signature.size() != slots * crypto::kSlotBytes) {
    return Rejected("bad_mac", fmt::format("a {} claiming rank {} has a {}-byte signature, not {}",
                                           broker::MessageTypeName(env.type), from,
                                           env.signature.size(), slots * crypto::kSlotBytes));
  }
  const size_t index = broadcast ? static_cast<size_t>(rank_ < from ? rank_ : rank_ - 1) : 0;
  const auto slot =
      std::span(env.signature).subspan(index * crypto::kSlotBytes, crypto::kSlotBytes);
  switch (crypto::OpenSlot(*keys, env.seq, broker::SigningHeader(env), env.body, slot)) {
    case crypto::SlotVerdict::kBadMac:
      return Rejected("bad_mac", fmt::format("a {} claiming rank {} fails its MAC (forged or "
                                             "altered header)",
                                             broker::MessageTypeName(env.type), from));
    case crypto::SlotVerdict::kTamperedBody:
      return Rejected("tampered_body",
                      fmt::format("a {} of rank {} (epoch {} step {}) has an authentic header but "
                                  "an altered body",
                                  broker::MessageTypeName(env.type), from, env.epoch, env.step));
    case crypto::SlotVerdict::kOk:
      break;
  }
  if (env.seq <= last_seq_[from]) {
    return Rejected("replay",
                    fmt::format("a {} of rank {} with seq {} after seq {} (replayed or "
                                "duplicated)",
                                broker::MessageTypeName(env.type), from, env.seq, last_seq_[from]));
  }
  last_seq_[from] = env.seq;
  return {};
}

Status JoinRun(Mailbox& mailbox, SessionAuthenticator& auth, broker::Deadline deadline) {
  broker::Envelope join;
  join.type = MessageType::kJoin;
  join.body = auth.handshake().JoinMessage();
  P2P_RETURN_IF_ERROR(mailbox.Send(std::move(join)));
  auto flush = [&]() -> Status {
    for (auto& [to, env] : auth.TakeReplies())
      P2P_RETURN_IF_ERROR(mailbox.Send(std::move(env), to));
    return Status::Ok();
  };
  while (!auth.joined()) {
    Status s = mailbox.Pump(deadline);
    if (s.code() == StatusCode::kTimeout) {
      return Timeout(
          "join handshake: rank(s) {} did not prove their identity before the deadline "
          "(--connect-timeout): {}",
          fmt::join(auth.handshake().missing(), ", "), auth.handshake().MissingReport());
    }
    P2P_RETURN_IF_ERROR(s);
    P2P_RETURN_IF_ERROR(flush());
  }
  return flush();
}

Status SendHandshakeReplies(Mailbox& mailbox, SessionAuthenticator& auth) {
  for (auto& [to, env] : auth.TakeReplies()) P2P_RETURN_IF_ERROR(mailbox.Send(std::move(env), to));
  return Status::Ok();
}

}  // namespace p2p::sync
