// What a SPIRT peer announces over the run's transport once its per-peer average is in its
// database: the sample count it stands for, the blob's length and its SHA-256. The envelope around
// it is the mailbox's (MAC'd per pair unless --insecure), so a reader that checks a fetched blob
// against it knows the blob is what its owner meant, whatever the database or the path did.
//
//   offset 0  4 bytes  magic "SPA1"
//          4  4 bytes  samples, uint32 little-endian
//          8  8 bytes  blob length in bytes, uint64 little-endian
//         16 32 bytes  SHA-256 of the blob
#pragma once

#include <cstdint>
#include <span>
#include <string_view>

#include "broker/envelope.h"
#include "common/status.h"
#include "crypto/mac.h"

namespace p2p::spirt {

inline constexpr size_t kAnnouncementBytes = 48;
// The envelope's codec id, so an announcement is never mistaken for a gradient body.
inline constexpr std::string_view kAnnouncementCodec = "spirt";

struct Announcement {
  uint32_t samples = 0;
  uint64_t length = 0;
  crypto::Sha256Digest sha256{};
  bool operator==(const Announcement&) const = default;
};

// Length and SHA-256 of `blob`, with `samples`.
Announcement Announce(std::string_view blob, uint32_t samples);
broker::Bytes EncodeAnnouncement(const Announcement& a);
// Untrusted input: InvalidArgument naming what is wrong (size, magic, a length over the blob
// limit).
Result<Announcement> DecodeAnnouncement(std::span<const std::byte> body);

}  // namespace p2p::spirt
