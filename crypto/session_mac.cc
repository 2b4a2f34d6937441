#include "crypto/session_mac.h"

#include <algorithm>
#include <string_view>

namespace p2p::crypto {
namespace {

constexpr std::string_view kDomain = "p2ptrain-msg-v1";

std::array<std::byte, kHeaderTagBytes> HeaderTag(const SecretBytes& key, ByteSpan header,
                                                 const PolyTag& body_tag) {
  const ByteSpan pieces[] = {AsBytes(kDomain), header, body_tag};
  const Sha256Digest full = HmacSha256(key, pieces);
  std::array<std::byte, kHeaderTagBytes> out{};
  std::copy_n(full.begin(), out.size(), out.begin());
  return out;
}

}  // namespace

Slot SealSlot(const PairKeys& keys, uint64_t seq, ByteSpan header, ByteSpan body) {
  const PolyTag body_tag = Poly1305Tag(keys.send_body, seq, body);
  const auto header_tag = HeaderTag(keys.send_header, header, body_tag);
  Slot slot{};
  std::copy(header_tag.begin(), header_tag.end(), slot.begin());
  std::copy(body_tag.begin(), body_tag.end(), slot.begin() + kHeaderTagBytes);
  return slot;
}

SlotVerdict OpenSlot(const PairKeys& keys, uint64_t seq, ByteSpan header, ByteSpan body,
                     ByteSpan slot) {
  if (slot.size() != kSlotBytes) return SlotVerdict::kBadMac;
  PolyTag claimed_body{};
  std::copy_n(slot.begin() + kHeaderTagBytes, claimed_body.size(), claimed_body.begin());
  const auto header_tag = HeaderTag(keys.recv_header, header, claimed_body);
  if (!ConstantTimeEqual(header_tag, slot.first(kHeaderTagBytes))) return SlotVerdict::kBadMac;
  const PolyTag body_tag = Poly1305Tag(keys.recv_body, seq, body);
  if (!ConstantTimeEqual(body_tag, claimed_body)) return SlotVerdict::kTamperedBody;
  return SlotVerdict::kOk;
}

}  // namespace p2p::crypto
