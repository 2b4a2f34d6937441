#include "spirt/announcement.h"

#include <cstring>

#include "store/blob.h"

namespace p2p::spirt {
namespace {

constexpr char kMagic[4] = {'S', 'P', 'A', '1'};

template <typename T>
void PutLe(T v, std::byte* out) {
  for (size_t i = 0; i < sizeof(T); ++i) out[i] = static_cast<std::byte>((v >> (8 * i)) & 0xff);
}

template <typename T>
T GetLe(const std::byte* in) {
  T v = 0;
  for (size_t i = 0; i < sizeof(T); ++i)
    v |= static_cast<T>(std::to_integer<uint8_t>(in[i])) << (8 * i);
  return v;
}

}  // namespace

Announcement Announce(std::string_view blob, uint32_t samples) {
  const crypto::ByteSpan bytes(reinterpret_cast<const std::byte*>(blob.data()), blob.size());
  const crypto::ByteSpan pieces[] = {bytes};
  return {.samples = samples, .length = blob.size(), .sha256 = crypto::Sha256(pieces)};
}

broker::Bytes EncodeAnnouncement(const Announcement& a) {
  broker::Bytes out(kAnnouncementBytes);
  std::memcpy(out.data(), kMagic, 4);
  PutLe<uint32_t>(a.samples, out.data() + 4);
  PutLe<uint64_t>(a.length, out.data() + 8);
  std::memcpy(out.data() + 16, a.sha256.data(), a.sha256.size());
  return out;
}

Result<Announcement> DecodeAnnouncement(std::span<const std::byte> body) {
  if (body.size() != kAnnouncementBytes) {
    return InvalidArgument("SPIRT announcement of {} bytes; expected {}", body.size(),
                           kAnnouncementBytes);
  }
  if (std::memcmp(body.data(), kMagic, 4) != 0) {
    return InvalidArgument("SPIRT announcement without its magic 'SPA1'");
  }
  Announcement a;
  a.samples = GetLe<uint32_t>(body.data() + 4);
  a.length = GetLe<uint64_t>(body.data() + 8);
  constexpr uint64_t kMaxLength = store::kBlobHeaderBytes + 4ull * store::kMaxBlobFloats;
  if (a.length < store::kBlobHeaderBytes || a.length > kMaxLength) {
    return InvalidArgument("SPIRT announcement of a {}-byte blob; a blob has {}..{} bytes",
                           a.length, store::kBlobHeaderBytes, kMaxLength);
  }
  std::memcpy(a.sha256.data(), body.data() + 16, a.sha256.size());
  return a;
}

}  // namespace p2p::spirt
