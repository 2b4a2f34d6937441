#include "crypto/handshake.h"

#include <fmt/ranges.h>

#include <algorithm>
#include <cstring>

#include "crypto/rsa.h"

namespace p2p::crypto {
namespace {

// Body layout (docs/wire-format.md section 5): "P2PJ" | u8 version 1 | u8 kind | fields, each
// u32 (LE) or a length-prefixed byte string (u32 LE length, then the bytes).
constexpr std::string_view kMagic = "P2PJ";
constexpr uint8_t kVersion = 1;
enum class Kind : uint8_t { kJoin = 1, kProof = 2, kRefusal = 3 };

constexpr size_t kNonceBytes = 32;
constexpr size_t kShareBytes = 32;
constexpr size_t kMaxField = 4096;         // SPKI of RSA-8192 is ~1.1 KiB
constexpr size_t kMaxAnsweredPerRank = 4;  // JOINs answered per claimed rank (CPU bound)
constexpr std::string_view kProofDomain = "p2ptrain-join-proof-v1";
constexpr std::string_view kSessionDomain = "p2ptrain-session-v1";

class Writer {
 public:
  Writer& U32(uint32_t v) {
    for (int i = 0; i < 4; ++i) out_.push_back(static_cast<std::byte>(v >> (8 * i)));
    return *this;
  }
  Writer& Field(ByteSpan b) {
    U32(static_cast<uint32_t>(b.size()));
    return Raw(b);
  }
  Writer& Field(std::string_view s) { return Field(AsBytes(s)); }
  Writer& Raw(ByteSpan b) {
    // Handshake bodies are small; byte-wise appends also keep GCC 12's -Wstringop-overflow quiet.
    out_.reserve(out_.size() + b.size());
    for (std::byte x : b) out_.push_back(x);
    return *this;
  }
  Bytes Take() { return std::move(out_); }

 private:
  Bytes out_;
};

class Reader {
 public:
  explicit Reader(ByteSpan in) : in_(in) {}
  bool U32(uint32_t& v) {
    if (in_.size() - at_ < 4) return ok_ = false;
    v = 0;
    for (int i = 0; i < 4; ++i) v |= static_cast<uint32_t>(in_[at_ + i]) << (8 * i);
    at_ += 4;
    return true;
  }
  bool Field(Bytes& b, size_t max = kMaxField) {
    uint32_t n = 0;
    if (!U32(n) || n > max || in_.size() - at_ < n) return ok_ = false;
    b.assign(in_.begin() + at_, in_.begin() + at_ + n);
    at_ += n;
    return true;
  }
  bool Text(std::string& s, size_t max) {
    Bytes b;
    if (!Field(b, max)) return false;
    s.assign(reinterpret_cast<const char*>(b.data()), b.size());
    return true;
  }
  bool done() const { return ok_ && at_ == in_.size(); }

 private:
  ByteSpan in_;
  size_t at_ = 0;
  bool ok_ = true;
};

Writer Start(Kind kind) {
  Writer w;
  w.Raw(AsBytes(kMagic));
  const std::byte head[] = {std::byte{kVersion}, static_cast<std::byte>(kind)};
  w.Raw(head);
  return w;
}

// The kind of a handshake body, after checking magic and version; nullopt if malformed.
std::optional<Kind> KindOf(ByteSpan body) {
  if (body.size() < 6 || std::memcmp(body.data(), kMagic.data(), 4) != 0 ||
      body[4] != std::byte{kVersion}) {
    return std::nullopt;
  }
  return static_cast<Kind>(body[5]);
}

// Common head of every body: run id, run size and the two ranks (JOIN: `to` absent).
struct Head {
  std::string run;
  uint32_t size = 0, from = 0, to = 0;
};

struct ProofBody {
  Head head;
  Bytes spki, nonce_from, nonce_to, share_ct, signature;
};

struct RefusalBody {
  Head head;
  Bytes nonce_to;
  std::string reason, detail;
};

// The bytes a PROOF's signature covers.
Bytes Transcript(const std::string& run, int size, int from, const Fingerprint& from_key, int to,
                 const Fingerprint& to_key, ByteSpan nonce_from, ByteSpan nonce_to,
                 ByteSpan share_ct) {
  Writer w;
  w.Field(kProofDomain).Field(run).U32(size).U32(from).Field(from_key.bytes).U32(to);
  w.Field(to_key.bytes).Field(nonce_from).Field(nonce_to).Field(share_ct);
  return w.Take();
}

}  // namespace

Result<JoinHandshake> JoinHandshake::Create(JoinConfig config) {
  if (config.key == nullptr || config.trust == nullptr) {
    return InvalidArgument("join handshake: no key or no trust store");
  }
  if (config.size < 1 || config.rank < 0 || config.rank >= config.size) {
    return InvalidArgument("join handshake: rank {} of {}", config.rank, config.size);
  }
  JoinHandshake hs(std::move(config));
  P2P_ASSIGN_OR_RETURN(hs.nonce_, RandomBytes(kNonceBytes));
  return hs;
}

Bytes JoinHandshake::JoinMessage() const {
  Writer w = Start(Kind::kJoin);
  w.Field(config_.run_id).U32(config_.size).U32(config_.rank);
  w.Field(config_.key->public_key().der()).Field(nonce_);
  return w.Take();
}

std::vector<int> JoinHandshake::missing() const {
  std::vector<int> out;
  for (int r = 0; r < config_.size; ++r) {
    if (r != config_.rank && !proven_.contains(r)) out.push_back(r);
  }
  return out;
}

void JoinHandshake::Forget(int peer) {
  proven_.erase(peer);
  answered_.erase(peer);
  refused_.erase(peer);
  told_.erase(peer);
  std::erase_if(key_owner_, [peer](const auto& entry) { return entry.second == peer; });
}

std::string JoinHandshake::MissingReport() const {
  std::vector<std::string> parts;
  for (int r : missing()) {
    std::string line = fmt::format("rank {}: ", r);
    if (refused_.contains(r)) {
      line += "refused here: " + refused_.at(r);
    } else if (answered_.contains(r)) {
      line += "its JOIN was answered but no valid PROOF came back";
    } else {
      line += "no JOIN received (not started, or not authenticating: --insecure?)";
    }
    if (told_.contains(r)) line += fmt::format("; it refused us: {}", told_.at(r));
    parts.push_back(std::move(line));
  }
  return fmt::format("{}", fmt::join(parts, "; "));
}

const PairKeys* JoinHandshake::keys(int peer) const {
  const auto it = proven_.find(peer);
  return it == proven_.end() ? nullptr : &it->second;
}

JoinHandshake::Step JoinHandshake::Refuse(int from, std::optional<ByteSpan> their_nonce,
                                          std::string reason, std::string detail) {
  Step step;
  if (their_nonce) {  // tell the claimed sender why, echoing its nonce so it can tell it is fresh
    Writer w = Start(Kind::kRefusal);
    w.Field(config_.run_id).U32(config_.size).U32(config_.rank).U32(from);
    w.Field(*their_nonce).Field(reason).Field(detail);
    step.reply = w.Take();
  }
  // The first refusal is kept: later ones (a PROOF for a refused JOIN) are consequences.
  if (from >= 0 && from < config_.size && !proven_.contains(from))
    refused_.try_emplace(from, detail);
  step.refusal = Refusal{std::move(reason), std::move(detail)};
  return step;
}

JoinHandshake::Step JoinHandshake::OnJoin(int from, ByteSpan body) {
  Head h;
  Bytes spki, nonce;
  Reader r(body.size() >= 6 ? body.subspan(6) : ByteSpan{});
  const bool parsed = KindOf(body) == Kind::kJoin && r.Text(h.run, 128) && r.U32(h.size) &&
                      r.U32(h.from) && r.Field(spki) && r.Field(nonce, kNonceBytes) && r.done();
  if (!parsed || nonce.size() != kNonceBytes) {
    return Refuse(from, std::nullopt, "malformed_handshake",
                  fmt::format("a malformed JOIN claiming rank {}", from));
  }
  if (h.run != config_.run_id || h.size != static_cast<uint32_t>(config_.size) ||
      h.from != static_cast<uint32_t>(from)) {
    return Refuse(from, std::nullopt, "malformed_handshake",
                  fmt::format("a JOIN whose body (run '{}', size {}, rank {}) contradicts its "
                              "envelope (rank {})",
                              h.run, h.size, h.from, from));
  }
  if (proven_.contains(from)) {
    return Refuse(from, std::nullopt, "rank_taken",
                  fmt::format("a JOIN for rank {}, which key {} already holds", from,
                              proven_.at(from).peer_key.Short()));
  }
  const std::string nonce_key(reinterpret_cast<const char*>(nonce.data()), nonce.size());
  if (seen_nonces_.contains(nonce_key)) {
    return Refuse(
        from, std::nullopt, "reused_nonce",
        fmt::format("a JOIN claiming rank {} reuses a nonce already seen (replayed)", from));
  }
  auto key = PublicKey::FromDer(spki);
  if (!key.ok()) {
    return Refuse(from, nonce, "untrusted_key",
                  fmt::format("rank {} offers an unusable key: {}", from, key.status().message()));
  }
  const Fingerprint fp = key->fingerprint();
  if (const std::string why = config_.trust->ReasonNot(from, fp); !why.empty()) {
    return Refuse(from, nonce, why,
                  fmt::format("rank {}: {}", from, config_.trust->WhyNot(from, fp)));
  }
  if (const auto owner = key_owner_.find(fp); owner != key_owner_.end()) {
    return Refuse(from, nonce, "key_in_use",
                  fmt::format("rank {} offers key {}, which rank {} already holds", from,
                              fp.Short(), owner->second));
  }
  auto& answered = answered_[from];
  if (answered.size() >= kMaxAnsweredPerRank) {
    return Refuse(from, std::nullopt, "too_many_joins",
                  fmt::format("more than {} JOINs claiming rank {}", kMaxAnsweredPerRank, from));
  }
  // Only answered JOINs are remembered: bounded by kMaxAnsweredPerRank per rank, however many
  // untrusted ones an attacker sends.
  seen_nonces_.insert(nonce_key);
  Answered a{std::move(nonce), std::move(*key), {}};
  auto share = RandomSecret(kShareBytes);
  auto share_ct = share.ok() ? EncryptOaep(a.key, share->span()) : Result<Bytes>(share.status());
  if (!share_ct.ok()) {
    return Refuse(from, std::nullopt, "internal", share_ct.status().message());
  }
  a.share = std::move(*share);
  auto proof = Proof(from, a, *share_ct);
  if (!proof.ok()) return Refuse(from, std::nullopt, "internal", proof.status().message());
  answered.push_back(std::move(a));
  return Step{std::nullopt, std::move(*proof)};
}

Result<Bytes> JoinHandshake::Proof(int to, const Answered& answered, ByteSpan share_ct) const {
  const Bytes transcript = Transcript(config_.run_id, config_.size, config_.rank, fingerprint(), to,
                                      answered.key.fingerprint(), nonce_, answered.nonce, share_ct);
  const ByteSpan pieces[] = {transcript};
  P2P_ASSIGN_OR_RETURN(Bytes signature, SignPss(*config_.key, pieces));
  Writer w = Start(Kind::kProof);
  w.Field(config_.run_id).U32(config_.size).U32(config_.rank).U32(to);
  w.Field(config_.key->public_key().der()).Field(nonce_).Field(answered.nonce).Field(share_ct);
  w.Field(signature);
  return w.Take();
}

JoinHandshake::Step JoinHandshake::OnWelcome(int from, ByteSpan body) {
  const auto kind = KindOf(body);
  if (kind == Kind::kProof) return OnProof(from, body);
  if (kind == Kind::kRefusal) return OnRefusal(from, body);
  return Refuse(from, std::nullopt, "malformed_handshake",
                fmt::format("a malformed WELCOME claiming rank {}", from));
}

JoinHandshake::Step JoinHandshake::OnRefusal(int from, ByteSpan body) {
  RefusalBody b;
  Reader r(body.subspan(6));
  const bool parsed = r.Text(b.head.run, 128) && r.U32(b.head.size) && r.U32(b.head.from) &&
                      r.U32(b.head.to) && r.Field(b.nonce_to, kNonceBytes) &&
                      r.Text(b.reason, 64) && r.Text(b.detail, 512) && r.done();
  if (!parsed || b.head.from != static_cast<uint32_t>(from) ||
      b.head.to != static_cast<uint32_t>(config_.rank)) {
    return Refuse(from, std::nullopt, "malformed_handshake",
                  fmt::format("a malformed REFUSAL claiming rank {}", from));
  }
  if (!ConstantTimeEqual(b.nonce_to, nonce_)) {
    return Refuse(from, std::nullopt, "replayed_handshake",
                  fmt::format("a REFUSAL claiming rank {} answers another nonce than ours", from));
  }
  // Unauthenticated by nature (a rank that refuses us cannot prove anything to us): recorded for
  // the timeout report, never acted upon.
  told_[from] = fmt::format("{} ({})", b.detail, b.reason);
  return Step{
      Refusal{"join_refused", fmt::format("rank {} refused our JOIN: {}", from, told_[from])},
      std::nullopt};
}

JoinHandshake::Step JoinHandshake::OnProof(int from, ByteSpan body) {
  ProofBody b;
  Reader r(body.subspan(6));
  const bool parsed = r.Text(b.head.run, 128) && r.U32(b.head.size) && r.U32(b.head.from) &&
                      r.U32(b.head.to) && r.Field(b.spki) && r.Field(b.nonce_from, kNonceBytes) &&
                      r.Field(b.nonce_to, kNonceBytes) && r.Field(b.share_ct, 1024) &&
                      r.Field(b.signature, 1024) && r.done();
  if (!parsed || b.head.run != config_.run_id ||
      b.head.size != static_cast<uint32_t>(config_.size) ||
      b.head.from != static_cast<uint32_t>(from) ||
      b.head.to != static_cast<uint32_t>(config_.rank)) {
    return Refuse(from, std::nullopt, "malformed_handshake",
                  fmt::format("a malformed PROOF claiming rank {}", from));
  }
  if (proven_.contains(from)) {
    return Refuse(from, std::nullopt, "rank_taken",
                  fmt::format("a PROOF for rank {}, which key {} already holds", from,
                              proven_.at(from).peer_key.Short()));
  }
  if (!ConstantTimeEqual(b.nonce_to, nonce_)) {
    return Refuse(from, std::nullopt, "replayed_handshake",
                  fmt::format("a PROOF claiming rank {} answers a nonce that is not ours in this "
                              "run (a recorded handshake replayed?)",
                              from));
  }
  auto& candidates = answered_[from];
  const auto match = std::find_if(candidates.begin(), candidates.end(), [&](const Answered& a) {
    return a.nonce == b.nonce_from && a.key.der() == b.spki;
  });
  if (match == candidates.end()) {
    return Refuse(from, std::nullopt, "unknown_join",
                  fmt::format("a PROOF claiming rank {} for a JOIN that was never answered", from));
  }
  const Bytes transcript =
      Transcript(config_.run_id, config_.size, from, match->key.fingerprint(), config_.rank,
                 fingerprint(), b.nonce_from, nonce_, b.share_ct);
  const ByteSpan pieces[] = {transcript};
  if (!VerifyPss(match->key, pieces, b.signature)) {
    return Refuse(from, b.nonce_from, "bad_signature",
                  fmt::format("rank {}'s PROOF is not signed by key {} (a stolen public key "
                              "without its private key?)",
                              from, match->key.fingerprint().Short()));
  }
  auto share = DecryptOaep(*config_.key, b.share_ct);
  if (!share.ok()) {
    return Refuse(from, b.nonce_from, "bad_key_share",
                  fmt::format("rank {}'s key share: {}", from, share.status().message()));
  }
  const Fingerprint fp = match->key.fingerprint();
  if (const auto owner = key_owner_.find(fp); owner != key_owner_.end()) {
    return Refuse(from, b.nonce_from, "key_in_use",
                  fmt::format("rank {} proved key {}, which rank {} already holds", from,
                              fp.Short(), owner->second));
  }
  proven_.emplace(from, Derive(from, *match, *share));
  key_owner_[fp] = from;
  answered_.erase(from);
  refused_.erase(from);
  return Step{};
}

PairKeys JoinHandshake::Derive(int peer, const Answered& answered,
                               const SecretBytes& their_share) const {
  const int me = config_.rank;
  const bool me_low = me < peer;
  const Fingerprint& their_fp = answered.key.fingerprint();
  const ByteSpan ikm_lo = me_low ? answered.share.span() : their_share.span();
  const ByteSpan ikm_hi = me_low ? their_share.span() : answered.share.span();
  SecretBytes ikm(ikm_lo.size() + ikm_hi.size());
  std::copy(ikm_lo.begin(), ikm_lo.end(), ikm.data());
  std::copy(ikm_hi.begin(), ikm_hi.end(), ikm.data() + ikm_lo.size());
  Writer salt, info;
  salt.Raw(me_low ? ByteSpan(nonce_) : ByteSpan(answered.nonce));
  salt.Raw(me_low ? ByteSpan(answered.nonce) : ByteSpan(nonce_));
  info.Field(kSessionDomain).Field(config_.run_id).U32(config_.size);
  info.U32(std::min(me, peer)).Field((me_low ? fingerprint() : their_fp).bytes);
  info.U32(std::max(me, peer)).Field((me_low ? their_fp : fingerprint()).bytes);
  const Bytes salt_bytes = salt.Take(), info_bytes = info.Take();
  const SecretBytes okm = HkdfSha256(ikm.span(), salt_bytes, info_bytes, 4 * kMacKeyBytes);
  // okm = hdr[lo->hi] | body[lo->hi] | hdr[hi->lo] | body[hi->lo]
  auto part = [&](int i) {
    return SecretBytes(okm.span().subspan(i * kMacKeyBytes, kMacKeyBytes));
  };
  PairKeys keys;
  keys.peer = peer;
  keys.peer_key = their_fp;
  keys.send_header = part(me_low ? 0 : 2);
  keys.send_body = part(me_low ? 1 : 3);
  keys.recv_header = part(me_low ? 2 : 0);
  keys.recv_body = part(me_low ? 3 : 1);
  return keys;
}

}  // namespace p2p::crypto
