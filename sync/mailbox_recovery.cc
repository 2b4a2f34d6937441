// Mailbox recovery between live members: RESEND of a lost round message, and VIEW_INSTALL sent
// again to a member that missed it (the why is in mailbox.h).
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>

#include "common/byte_pool.h"
#include "sync/mailbox.h"

namespace p2p::sync {
namespace {

constexpr size_t kResendBodyBytes = 9;  // wanted type, then the asker's last seq from us (LE)

broker::Bytes EncodeResendBody(broker::MessageType type, uint64_t last_seq) {
  broker::Bytes body(kResendBodyBytes);
  body[0] = static_cast<std::byte>(type);
  for (size_t i = 0; i < 8; ++i) body[1 + i] = static_cast<std::byte>(last_seq >> (8 * i));
  return body;
}

struct ResendRequest {
  broker::MessageType type;
  uint64_t last_seq = 0;
};

std::optional<ResendRequest> DecodeResendBody(const broker::Bytes& body) {
  if (body.size() != kResendBodyBytes) return std::nullopt;
  const auto type = static_cast<broker::MessageType>(body[0]);
  if (!ViewScoped(type)) return std::nullopt;
  uint64_t seq = 0;
  for (size_t i = 0; i < 8; ++i) seq |= static_cast<uint64_t>(body[1 + i]) << (8 * i);
  return ResendRequest{type, seq};
}

}  // namespace

std::chrono::milliseconds Mailbox::resend_after() const {
  // Half the suspicion timeout: a lost frame costs a few seconds, not a suspicion, and a peer
  // that is merely slow is asked at most twice per timeout (and not made to send twice; see
  // AnswerResend).
  return std::max(std::chrono::milliseconds(500), suspect_after_ / 2);
}

Mailbox::RecoveryCounts Mailbox::recovery() const { return recovery_; }

void Mailbox::RememberInstall(const broker::Envelope& install) {
  broker::Envelope copy;
  copy.type = broker::MessageType::kViewInstall;
  copy.epoch = install.epoch;
  copy.step = install.step;
  copy.body = install.body;
  install_ = std::move(copy);
}

// Under send_mu_.
void Mailbox::Keep(broker::Envelope env, int to) {
  auto& kept = sent_[{env.type, to}];
  kept.push_back(Sent{std::move(env), {}});
  while (kept.size() > kSentKept) {
    BytePool::Global().Give(std::move(kept.front().env.body));
    kept.pop_front();
  }
}

void Mailbox::AskResend(broker::MessageType type, Round round, const std::vector<int>& ranks) {
  for (int r : ranks) {
    if (r == rank()) continue;
    broker::Envelope env;
    env.type = broker::MessageType::kResend;
    env.epoch = round.epoch;
    env.step = round.step;
    env.body = EncodeResendBody(type, last_seq_from_[r]);
    if (++recovery_.resend_requests == 1) {
      spdlog::info(
          "{} of epoch {} step {} from rank {} has not arrived after {} ms although it is alive: "
          "asking it to send it again (a frame may have been lost; counted as "
          "\"resend_requests\")",
          broker::MessageTypeName(type), round.epoch, round.step, r, resend_after().count());
    }
    Status s = Send(std::move(env), r);
    if (!s.ok()) spdlog::warn("could not ask rank {} to send again: {}", r, s.message());
  }
}

void Mailbox::AnswerResend(const broker::Envelope& request) {
  const int asker = request.sender;
  const auto wanted = DecodeResendBody(request.body);
  if (!wanted) {
    return Reject("malformed_resend",
                  fmt::format("a RESEND of {} bytes (want {}, naming a round message type)",
                              request.body.size(), kResendBodyBytes),
                  asker);
  }
  std::lock_guard lock(send_mu_);
  if (request.view != view_.id) return;  // a laggard is caught up by CatchUp instead
  for (int to : {asker, static_cast<int>(broker::kAllRanks)}) {
    auto it = sent_.find({wanted->type, to});
    if (it == sent_.end()) continue;
    for (Sent& sent : it->second) {
      const broker::Envelope& e = sent.env;
      if (e.epoch != request.epoch || e.step != request.step || e.view != request.view) continue;
      // The asker received something we sent after this (FIFO channel): this one was lost. If
      // not, it may still be on its way: wait for the next request.
      if (wanted->last_seq < e.seq || sent.resent[asker] >= kMaxResends) return;
      ++sent.resent[asker];
      broker::Envelope copy = e;
      copy.signature.clear();
      Status s = SignAndSend(copy, asker, asker);
      if (!s.ok()) {
        spdlog::warn("could not send {} again to rank {}: {}", broker::MessageTypeName(e.type),
                     asker, s.message());
        return;
      }
      if (++recovery_.resent == 1) {
        spdlog::info(
            "rank {} did not get {} of epoch {} step {}: sent it again (counted as "
            "\"resent\")",
            asker, broker::MessageTypeName(e.type), e.epoch, e.step);
      }
      return;
    }
  }
}

void Mailbox::CatchUp(int sender) {
  if (!install_ || install_->epoch != view_.id || !view_.Contains(sender)) return;
  if (!WatchingLiveness()) return;
  // During a view change members install at different moments (within an attempt timeout or
  // two); a member still behind resend_after() later has most likely missed the install. Sending
  // it twice costs one dropped duplicate.
  const auto grace = resend_after();
  const auto now = broker::Clock::now();
  if (now - view_installed_at_ < grace) return;
  auto [at, fresh] = install_forwarded_at_.try_emplace(sender, now);
  if (!fresh && now - at->second < grace) return;
  at->second = now;
  if (++recovery_.installs_forwarded == 1) {
    spdlog::info(
        "rank {} is still in an earlier view than {}: sending it the VIEW_INSTALL it "
        "missed (counted as \"installs_forwarded\")",
        sender, view_.id);
  }
  Status s = Send(*install_, sender);
  if (!s.ok()) spdlog::warn("could not send the view install to rank {}: {}", sender, s.message());
}

}  // namespace p2p::sync
