// Per-message authentication under the session keys two peers agreed on in the join handshake.
//
// Every message from rank s to rank r carries a 32-byte slot:
//
//   header_tag (16) = HMAC-SHA-256(K_hdr[s->r], "p2ptrain-msg-v1" || header || body_tag)[0..16)
//   body_tag   (16) = Poly1305 tag of the body under K_body[s->r] with nonce = the message's seq
//                     (ChaCha20-Poly1305, body as associated data, RFC 8439)
//
// `header` is everything the envelope signs except the body (broker::VisitSigningBytes' first
// piece: run id, type, sender, receiver, epoch, step, seq, codec, the body's length), so the
// header tag covers the header and, through body_tag, every body byte. The receiver checks the
// cheap header tag first (a forgery costs it one small HMAC, not a pass over a 4 MiB body), then
// the body tag (a mismatch now means a genuine header with an altered body: "tampered_body").
// Keys are directional (K[s->r] != K[r->s]) and per pair, so no third peer can forge s's
// messages to r. Why HMAC + Poly1305 and not HMAC-SHA-256 over the body, or RSA-PSS per message:
// docs/security.md (measured in bench/crypto_bench.cc).
//
// Thread-safety: pure functions over immutable keys.
#pragma once

#include <array>
#include <cstdint>

#include "crypto/keys.h"
#include "crypto/mac.h"

namespace p2p::crypto {

inline constexpr size_t kSlotBytes = 32;
inline constexpr size_t kHeaderTagBytes = 16;
using Slot = std::array<std::byte, kSlotBytes>;

// The session keys of one authenticated pair: this rank and `peer`.
struct PairKeys {
  PairKeys() = default;
  PairKeys(PairKeys&&) noexcept = default;
  PairKeys& operator=(PairKeys&&) noexcept = default;
  PairKeys(const PairKeys&) = delete;  // secrets have one owner
  PairKeys& operator=(const PairKeys&) = delete;

  int peer = -1;
  Fingerprint peer_key;
  SecretBytes send_header, send_body;  // for what we send to `peer`
  SecretBytes recv_header, recv_body;  // for what `peer` sends to us
};

// The slot for a message to `keys.peer` (uses the send keys). Precondition: `seq` was never used
// with these keys before (the body tag is a one-time MAC per nonce).
Slot SealSlot(const PairKeys& keys, uint64_t seq, ByteSpan header, ByteSpan body);

enum class SlotVerdict { kOk, kBadMac, kTamperedBody };
// Checks a slot of a message from `keys.peer` (uses the receive keys). Constant-time compares.
SlotVerdict OpenSlot(const PairKeys& keys, uint64_t seq, ByteSpan header, ByteSpan body,
                     ByteSpan slot);

}  // namespace p2p::crypto
